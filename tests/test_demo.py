"""demo/make_dataset.py: a dataset the UCF-101 adapter reads as it reads the real one, whose classes
move the way their names say."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from demo.make_dataset import CLASSES, SPEEDS, render
from preprocess.adapters import load_listing
from tests.conftest import ROOT


def test_demo_dataset_is_a_valid_ucf101_layout(tmp_path):
    r = subprocess.run([sys.executable, "demo/make_dataset.py", "--out", str(tmp_path), "--per-class", "4",
                        "--test-per-class", "1", "--frames", "12"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    L = load_listing("ucf101", tmp_path / "videos", tmp_path / "lists")
    assert len(L.classes) == 8 and len(L.entries) == 32 and not L.missing and not L.unlisted
    split = np.array([e.split for e in L.entries])
    for s in range(3):      # one test video per class in each split, a different one each time
        assert ((split[:, s] == 2).sum(), (split[:, s] == 1).sum()) == (8, 24)
    assert len({tuple(row) for row in split}) > 1
    assert all(L.classes[e.label] in e.video_id for e in L.entries)


def test_demo_dataset_rejects_a_test_share_that_leaves_no_train_videos(tmp_path):
    r = subprocess.run([sys.executable, "demo/make_dataset.py", "--out", str(tmp_path), "--per-class", "4",
                        "--test-per-class", "4"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--test-per-class" in r.stderr
    assert not (tmp_path / "videos").exists()


def displacement(a: np.ndarray, b: np.ndarray, axis: int) -> int:
    """The circular shift along ``axis`` that best maps frame a's brightness profile onto frame b's."""
    pa, pb = a.mean(axis=(1 - axis, 2)), b.mean(axis=(1 - axis, 2))
    pa, pb = pa - pa.mean(), pb - pb.mean()
    return int(np.argmax([np.dot(np.roll(pa, k), pb) for k in range(len(pa))]))


@pytest.mark.parametrize("cls", CLASSES)
def test_demo_classes_move_in_their_direction_at_their_speed(cls):
    t = 10
    frames = render(cls, np.random.default_rng(3), t + 1).astype(np.float32)
    moving, still = (1, 0) if "Right" in cls else (0, 1)     # axis 1 of a frame is x, axis 0 is y
    speed = SPEEDS["Fast" if cls.endswith("Fast") else "Slow"]
    assert displacement(frames[0], frames[t], still) == 0
    assert abs(displacement(frames[0], frames[t], moving) - speed * t) <= 0.1 * speed * t + 1
