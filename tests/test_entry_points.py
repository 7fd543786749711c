"""Run by path, an entry point imports the checkout it sits in, not whatever copy is installed
(the venv's editable install points elsewhere): checked from a copy of the packages in a temporary
folder, with PYTHONPATH unset, by the files Python reports loading."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shards", "train", "eval", "preprocess")


@pytest.mark.parametrize("script", ["eval/retrieval.py", "preprocess/build_shards.py", "train/pretrain.py"])
def test_an_entry_point_run_by_path_imports_its_own_checkout(tmp_path, script):
    copy = tmp_path / "elsewhere"
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-v", str(copy / script), "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # -v names each source file a module's code comes from ("code object from '...'" or "matches ...")
    loaded = set(re.findall(r"(?:code object from|matches) '?(/\S*?/(?:%s)/[\w/]*?\.py)" % "|".join(PACKAGES),
                            r.stderr))
    assert loaded, "no project module was imported"
    assert all(p.startswith(str(copy)) for p in loaded), sorted(p for p in loaded if not p.startswith(str(copy)))
