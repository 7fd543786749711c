"""The README runs as written: every shell block marked ``<!-- readme-test -->`` is executed, in
order, by one shell per block, on the sample data in ``../shared/data``, from a folder laid out like
a checkout (the project's folders linked in, ``../shared`` beside it) with ``.venv/bin`` first on
PATH, as the README tells a user to have it. A block that fails shows its text and its output."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED

MARK = "<!-- readme-test -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```(?:sh|bash|console)\n(.*?)\n```", re.S)
# the folders a README command may name by path
PROJECT_DIRS = ("configs", "preprocess", "shards", "train", "eval", "demo", "bench", "tests")


def marked_blocks(text: str) -> list[str]:
    """The marked shell blocks of a Markdown text, in order; a marker not followed by a fenced
    sh/bash block is an error (a marker that silently runs nothing would let the README drift)."""
    blocks = BLOCK.findall(text)
    if len(blocks) != text.count(MARK):
        raise ValueError(f"{text.count(MARK) - len(blocks)} '{MARK}' marker(s) not followed by a ```sh block")
    return blocks


def test_marked_blocks_parse():
    text = f"a\n{MARK}\n```sh\necho one\necho two\n```\nb\n    not run\n{MARK}\n```bash\necho three\n```\n"
    assert marked_blocks(text) == ["echo one\necho two", "echo three"]
    with pytest.raises(ValueError, match="1 '<!-- readme-test -->' marker"):
        marked_blocks(f"{MARK}\n    indented, not fenced\n")


def checkout_like(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir()
    for name in PROJECT_DIRS:
        (work / name).symlink_to(ROOT / name)
    (tmp / "shared").symlink_to(SHARED.parent)
    return work


def test_readme_runs_as_written(tmp_path, shared_data):
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 4, "the README's walkthrough blocks lost their markers"
    work = checkout_like(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    for i, block in enumerate(blocks, 1):
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (f"README block {i} of {len(blocks)} exited {proc.returncode}:\n{block}\n"
                                      f"--- output ---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
