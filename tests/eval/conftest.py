"""Shards the eval tests share."""
from __future__ import annotations

import contextlib
import io

import pytest


@pytest.fixture(scope="session")
def flat_shards(tmp_path_factory):
    """Two classes (Red, Blue) of five 40-frame videos at 128x171: split 1 holds 4 train and 1 test
    video a class, enough train videos for a batch of 2 beside a validation part (the real clips'
    split 1 has 2 train videos)."""
    from preprocess.build_shards import main as build
    from tests.synthetic import make_flat_video, write_ucf_layout

    root = tmp_path_factory.mktemp("flat")
    classes = {c: [(f"v_{c}_g0{j}_c01", 40) for j in range(1, 6)] for c in ("Red", "Blue")}
    videos, lists = write_ucf_layout(root / "data", classes, test_every=5)
    for c, items in classes.items():
        for name, n in items:
            make_flat_video(videos / c / f"{name}.avi", n)
    with contextlib.redirect_stdout(io.StringIO()):
        assert build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists),
                      "--out", str(root / "shards"), "--workers", "1", "--no-progress"]) == 0
    return root / "shards"


@pytest.fixture(scope="session")
def tiny_run(real_ucf_shards, tmp_path_factory):
    """A tiny pretraining run on the real clips (configs/tiny_cpu.yaml: 8-frame clips at 64 px):
    checkpoints at steps 2 and 4, backbone.pt and config.yaml."""
    from tests.train.test_pretrain import run

    out = tmp_path_factory.mktemp("pretrained") / "run"
    assert run(real_ucf_shards, out, "train.max_steps=4", "train.ckpt_every=2", "train.keep_ckpts=0") == 0
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run):
    return tiny_run / "ckpt-00000004.pt"
