"""eval/figures.py: the confusion matrix and per-class accuracy, the closed-form probe, the figures
the linear probe and fine-tune write; eval/report.py: the retrieval figure's frames over time."""
from __future__ import annotations

import numpy as np
import torch

from eval.figures import class_figures, confusion, logit_figures, per_class_accuracy, ridge_probe
from eval.report import frame_strip

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def test_confusion_counts_true_against_predicted_and_per_class_accuracy_reads_its_diagonal():
    cm = confusion([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 0], 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 2 / 3, 0.0])
    assert np.isnan(acc[3])                    # a class without test videos has no accuracy, not 0


def test_the_closed_form_probe_separates_separable_classes_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 32)) * 4
    y_train, y_test = np.repeat(np.arange(5), 8), np.repeat(np.arange(5), 4)
    x_train = centres[y_train][:, None] + rng.normal(size=(40, 3, 32))
    x_test = centres[y_test][:, None] + rng.normal(size=(20, 3, 32))
    assert (ridge_probe(x_train, y_train, x_test, 5) == y_test).mean() == 1.0
    noise = rng.normal(size=(40, 3, 32))        # features that carry no label: about chance (1/5)
    assert (ridge_probe(noise, y_train, rng.normal(size=(20, 3, 32)), 5) == y_test).mean() < 0.6


def test_class_figures_are_written_and_not_empty(tmp_path):
    classes = [f"class {i}" for i in range(7)]
    logits = torch.zeros(14, 3, 7)
    labels = np.repeat(np.arange(7), 2)
    logits[np.arange(14), :, (labels + (np.arange(14) % 2)) % 7] = 1.0     # half right, half the next class
    paths = logit_figures(tmp_path, "probe", logits, labels, classes, "linear probe: test")
    assert [p.name for p in paths] == ["probe_per_class.png", "probe_confusion.png"]
    assert all(is_png(p) for p in paths)
    many = class_figures(tmp_path / "many", "ft", np.eye(101, dtype=int), [f"c{i}" for i in range(101)], "101 classes")
    assert all(is_png(p) for p in many)


def test_the_retrieval_figure_shows_three_frames_of_each_video_side_by_side(real_ucf_shards):
    from shards.format import STATUS_OK
    from shards.random_access import FrameReader

    reader = FrameReader(real_ucf_shards)
    row = int(np.flatnonzero(reader.index.status == STATUS_OK)[0])
    strip = frame_strip(reader, row, 3, gap=2)
    n = int(reader.index.n_frames[row])
    frames = reader.read_frames(row, [n // 6, n // 2, 5 * n // 6])
    h, w = frames[0].shape[:2]
    assert strip.shape == (h, 3 * w + 4, 3)
    assert np.array_equal(strip[:, :w], frames[0]) and np.array_equal(strip[:, -w:], frames[2])
    assert not np.array_equal(frames[0], frames[2])          # different moments of the clip


def test_the_linear_probe_writes_its_class_figures(real_ucf_shards, tmp_path):
    from eval.linear_probe import main as probe

    assert probe(["--protocol", "full-batch", "--ckpt", "none", "--width", "0.125", "--shards", str(real_ucf_shards), "--clips", "1",
                  "--clip-len", "8", "--epochs", "2", "--out", str(tmp_path), "--cache", str(tmp_path / "c"),
                  "--no-progress"]) == 0
    assert all(is_png(tmp_path / f"linear_probe_split1_{kind}.png") for kind in ("per_class", "confusion"))
