"""demo/make_dataset.py writes a dataset the UCF-101 adapter reads as it reads the real one."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from preprocess.adapters import load_listing
from tests.conftest import ROOT


def test_demo_dataset_is_a_valid_ucf101_layout(tmp_path):
    r = subprocess.run([sys.executable, "demo/make_dataset.py", "--out", str(tmp_path), "--per-class", "4",
                        "--frames", "12"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    L = load_listing("ucf101", tmp_path / "videos", tmp_path / "lists")
    assert len(L.classes) == 8 and len(L.entries) == 32 and not L.missing and not L.unlisted
    split = np.array([e.split for e in L.entries])
    assert ((split[:, 0] == 2).sum(), (split[:, 0] == 1).sum()) == (24, 8)   # 3 test videos per class
    assert all(L.classes[e.label] in e.video_id for e in L.entries)
