"""The demo: make_dataset.py writes a dataset the UCF-101 adapter reads as it reads the real one, whose
classes move the way their names say; run.py takes it through every stage to the table."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from demo.make_dataset import CLASSES, SPEEDS, render, render_video
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


def test_demo_runner_goes_from_videos_to_the_table(tmp_path):
    """demo/run.py end to end at a toy size: generation, dask-submit shards, torchrun pretraining,
    retrieval and linear probe for both models, and the table."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "demo/run.py", "--out", str(out), "--per-class", "3", "--test-per-class", "1",
                        "--frames", "40", "data.batch_size=2", "train.max_steps=2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "8 test videos against 16 train videos, 8 classes" in r.stdout
    rows = json.loads((out / "summary.json").read_text())
    assert set(rows) == {"random init", "CSTP"}
    for v in rows.values():
        assert set(v) == {"R@1", "R@5", "R@10", "top-1"} and all(0 <= x <= 1 for x in v.values())
        assert v["R@1"] <= v["R@5"] <= v["R@10"]
    for name, v in rows.items():      # the printed table is the summary's figures
        assert f"{name:12s} " + " ".join(f"{100 * v[k]:6.1f}" for k in ("R@1", "R@5", "R@10", "top-1")) in r.stdout
    assert ("CSTP beats" in r.stdout) == (rows["CSTP"]["R@1"] > rows["random init"]["R@1"])
    assert [p.name for p in (out / "run").glob("ckpt-*.pt")] == ["ckpt-00000002.pt"]
    assert "step 2" in json.loads((out / "eval" / "cstp" / "retrieval.json").read_text())["model"]
    assert (out / "eval" / "cstp" / "retrieval.png").stat().st_size > 0
    # one progress line per stage on the console (off a terminal, repeated every 30 s; the step count
    # and loss read from the bars), the commands' whole output in the log, and the plots where the
    # demo says it wrote them
    lines = r.stdout.splitlines()
    for stage in ("1/4 generate the dataset", "2/4 shards on a Dask LocalCluster", "3/4 pretrain CSTP, torchrun 2 processes",
                  "4/4 random init: retrieval", "4/4 random init: linear probe", "4/4 CSTP: retrieval", "4/4 CSTP: linear probe"):
        mine = [x for x in lines if x.startswith(f"[{stage}]")]
        assert mine and mine[-1].endswith("done") and sum(x.endswith("done") for x in mine) == 1, (stage, mine)
    pretrain_line = next(x for x in lines if x.startswith("[3/4"))
    assert "  2/2  " in pretrain_line and " loss " in pretrain_line
    log = (out / "demo.log").read_text()
    assert "done: 2 steps" in log and "train/pretrain.py" in log and "loss=" in log
    assert f"figures: {out / 'plots'}/" in r.stdout
    for name in ("loss.png", "accuracy.png", "lr.png", "throughput.png", "demo_table.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "run" / "tb").exists()          # configs/demo.yaml: tensorboard off, as the README says


def test_the_progress_line_reads_step_total_and_loss_from_tqdm_bars():
    from demo.progress import State

    s = State(t0=0.0)
    s.feed("\r  1%|          | 10/770 [00:05<06:20,  2.00step/s, loss=4.213]", now=10.0)
    assert s.line("3/4 pretrain", now=10.0) == "[3/4 pretrain]  10/770  ETA ?  loss 4.213  (10s)"
    s.feed("\r  5%|▌         | 40/770 [00:20<06:05,  2.00step/s, loss=3.900]", now=25.0)   # 30 steps in 15 s
    assert s.line("3/4 pretrain", now=25.0) == "[3/4 pretrain]  40/770  ETA 6m05s  loss 3.900  (25s)"
    assert s.line("3/4 pretrain", now=25.0, final=True) == "[3/4 pretrain]  40/770  loss 3.900  (25s)"
    s.feed("features: 50%|█████     | 1/2 [00:01<00:01]", now=30.0)      # a new bar starts its ETA over
    assert (s.done, s.total, s.eta(30.0)) == (1, 2, None)


def quarter_means(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    return np.array([frame[y:y + h, x:x + w].reshape(-1, 3).mean(0) for y in (0, h) for x in (0, w)])


def test_textured_videos_differ_across_the_frame_and_over_time():
    """What STOR needs to be visible: two crops of one frame show different things (the plain videos'
    crops look alike), and a clip a few frames later is another picture (camera, objects, light)."""
    rng = np.random.default_rng(4)
    plain = render("CircleRightSlow", rng, 20).astype(np.float32)
    textured = render_video("CircleRightSlow", rng, 20, "textured").astype(np.float32)
    assert textured.shape == plain.shape == (20, 128, 171, 3)
    spread = lambda f: float(np.abs(quarter_means(f) - quarter_means(f).mean(0)).mean())   # noqa: E731
    assert spread(textured[0]) > 1.5 * spread(plain[0]) and spread(textured[0]) > 10
    change = lambda v: float(np.abs(v[6] - v[0]).mean())                                      # noqa: E731
    assert change(textured) > 3 * change(plain)
    # the light: whole-frame brightness follows a course of its own over the video
    assert np.ptp(textured.mean(axis=(1, 2, 3))) > 10


def test_textured_videos_have_an_up_and_a_colour_course_per_channel():
    """Rotation needs an up: in every video the top of every frame is brighter than its bottom (a
    frame turned by 180 degrees is not). The temporal overlap needs a course of the light that a few
    frames' shift changes: red, green and blue follow their own courses (a shared brightness course,
    or one that keeps the luminance, left the temporal head at chance)."""
    rng = np.random.default_rng(7)
    for cls in ("CircleRightSlow", "SquareDownFast", "CircleDownSlow"):
        v = render_video(cls, rng, 30, "textured").astype(np.float32)
        top, bottom = v[:, :32].mean(axis=(1, 2, 3)), v[:, -32:].mean(axis=(1, 2, 3))
        assert (top > bottom + 10).all(), (cls, (top - bottom).min())
        course = v.mean(axis=(1, 2)) / v.mean(axis=(0, 1, 2))          # [frames, 3], each channel's gain
        assert np.ptp(course, axis=0).min() > 0.2, cls                   # each channel swells and fades
        corr = np.corrcoef(course.T)
        assert corr[np.triu_indices(3, 1)].min() < 0.9, (cls, corr)      # and not all in step


def test_textured_dataset_is_a_valid_ucf101_layout(tmp_path):
    r = subprocess.run([sys.executable, "demo/make_dataset.py", "--out", str(tmp_path), "--per-class", "2",
                        "--test-per-class", "1", "--frames", "12", "--content", "textured"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    L = load_listing("ucf101", tmp_path / "videos", tmp_path / "lists")
    assert len(L.classes) == 8 and len(L.entries) == 16 and not L.missing and not L.unlisted
