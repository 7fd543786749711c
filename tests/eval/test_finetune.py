"""Fine-tuning: its clip sampling, its augmentation options (flags and an ablation YAML's finetune:
section), its errors, and runs on shards of the real clips (one process and two torchrun ranks)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.classify import validation_split
from eval.finetune import main as finetune, parse_args, random_clip
from eval.ft_clips import all_clip_indices, eval_clip_indices, train_clip_indices
from eval.ft_config import read_finetune_section
from shards.errors import InputError
from shards.random_access import FrameReader, evenly_spaced_clips
from tests.conftest import ROOT
from tests.train.test_pretrain import run

SMALL = ["--clip-len", "8", "--crop", "64", "--val-clips", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_ckpt(real_ucf_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    assert run(real_ucf_shards, out, "train.max_steps=2") == 0
    return out / "ckpt-00000002.pt"


def test_a_training_clip_has_frames_one_step_apart_inside_the_video():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(2000):
        idx = train_clip_indices(100, 8, 4, rng)
        assert (np.diff(idx) == 4).all() and idx[0] >= 0 and idx[-1] <= 99
        starts.add(int(idx[0]))
    assert starts == set(range(0, 100 - 28))          # every start that fits, and no other
    short = train_clip_indices(10, 8, 4, rng)          # shorter than one clip: the last frame repeats
    assert short.tolist() == [0, 4, 8, 9, 9, 9, 9, 9]


def test_all_test_clips_tile_the_video_without_sharing_a_frame():
    idx = all_clip_indices(100, 8, 4)
    assert idx[:, 0].tolist() == [0, 32, 64] and (np.diff(idx, axis=1) == 4).all() and idx.max() <= 99
    assert len(np.unique(idx)) == idx.size
    assert all_clip_indices(124, 8, 4)[:, 0].tolist() == [0, 32, 64]          # a fourth would end at frame 124
    assert all_clip_indices(125, 8, 4)[:, 0].tolist() == [0, 32, 64, 96]
    assert all_clip_indices(10, 8, 4).tolist() == [[0, 4, 8, 9, 9, 9, 9, 9]]
    assert np.array_equal(eval_clip_indices(100, 8, 4, 10), evenly_spaced_clips(100, 10, 8, 4))
    assert eval_clip_indices(100, 8, 4, "all").shape == (3, 8)


class Spy:
    """A FrameReader that records which frames each read asked for."""

    def __init__(self, reader):
        self.reader, self.index, self.asked = reader, reader.index, []

    def read_frames(self, row, frames):
        self.asked.append(np.asarray(frames))
        return self.reader.read_frames(row, frames)


def test_training_clips_take_the_playback_rate_and_the_rotation_from_the_lists(real_ucf_shards):
    reader = FrameReader(str(real_ucf_shards))
    row = int(np.argmax(reader.index.n_frames))
    spy = Spy(reader)
    opts = dict(stride=3, clip_len=8, crop=64)
    for _ in range(12):
        random_clip(spy, row, argparse.Namespace(rates=[2, 4], rotations=[0], **opts), np.random.default_rng(len(spy.asked)))
    assert {int(np.diff(a)[0]) for a in spy.asked} == {6, 12}           # stride x rate, both rates drawn
    plain = random_clip(reader, row, argparse.Namespace(rates=[1], rotations=[0], **opts), np.random.default_rng(5))
    turned = random_clip(reader, row, argparse.Namespace(rates=[1], rotations=[90], **opts), np.random.default_rng(5))
    assert turned.shape == plain.shape == (3, 8, 64, 64)
    assert torch.equal(turned, torch.rot90(plain, 1, dims=(2, 3))) and not torch.equal(turned, plain)


def test_the_finetune_section_of_an_ablation_yaml_sets_rates_and_rotations(tmp_path):
    cfg = tmp_path / "scratch_rate_rot.yaml"
    cfg.write_text("model: {backbone: r21d_10}\nloss: {rate: 1.0}\nfinetune: {rates: [1, 2, 4, 8], rotations: [0, 90, 180, 270]}\n")
    assert read_finetune_section(cfg) == {"rates": [1, 2, 4, 8], "rotations": [0, 90, 180, 270]}
    base = ["--ckpt", "none", "--shards", "x", "--config", str(cfg)]
    a = parse_args(base)
    assert (a.rates, a.rotations, a.stride, a.test_clips) == ([1, 2, 4, 8], [0, 90, 180, 270], 4, 10)
    b = parse_args([*base, "--rotations", "0", "--test-clips", "all"])               # the command line wins
    assert (b.rates, b.rotations, b.test_clips) == ([1, 2, 4, 8], [0], "all")
    assert (parse_args(["--ckpt", "none", "--shards", "x"]).rates, parse_args(["--ckpt", "none", "--shards", "x"]).rotations) == ([1], [0])


@pytest.mark.parametrize("text, msg", [
    ("finetune: {rates: [1, 2], rotation: [0]}\n", "unknown key finetune.rotation; the keys are rates, rotations"),
    ("finetune: {rotations: [0, 45]}\n", "finetune.rotations [0, 45]: rotations are multiples of 90 degrees"),
    ("finetune: {rates: [0]}\n", "finetune.rates [0]: playback rates are whole numbers of 1 or more"),
    ("model: {backbone: c3d}\n", "has no finetune: section"),
    ("finetune: [1\n", "not valid YAML"),
])
def test_a_bad_finetune_section_is_an_input_error_naming_the_key(tmp_path, text, msg):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        read_finetune_section(cfg)


def test_bad_flags_say_what_would_work(real_ucf_shards, tmp_path, capsys):
    base = ["--ckpt", "none", "--width", "0.125", "--shards", str(real_ucf_shards), "--out", str(tmp_path), *SMALL]
    cases = [
        (["--val-fraction", "0"], "no validation videos: --val-fraction 0 leaves none; use e.g. --val-fraction 0.1"),
        # split 1 has 2 train videos, both SoccerJuggling: 10% of 2 rounds to none
        (["--val-fraction", "0.1"], "no validation videos: --val-fraction 0.1 of at most 2 train videos per class "
                                    "rounds to none; use --val-fraction 0.26 or more"),
        (["--val-fraction", "0.5", "--batch-size", "2"], "split 1: 1 train videos (after 1 held out) cannot fill one "
                                                         "batch of --batch-size 2 on each of 1 ranks; use --batch-size 1 or less"),
        (["--rates", "1,x"], "--rates 1,x: invalid literal"),
        (["--test-clips", "some"], "--test-clips some: give a number of clips per video (e.g. 10) or 'all'"),
        (["--stride", "0"], "--stride 0: frames are at least 1 apart; the authors use --stride 4"),
        (["--config", str(tmp_path / "none.yaml")], f"--config {tmp_path / 'none.yaml'}: no such file"),
    ]
    for extra, msg in cases:
        capsys.readouterr()
        assert finetune([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"finetune.py: {msg}"), err
    # and the fraction it suggests does hold one out
    assert [len(x) for x in validation_split(np.arange(2), np.zeros(2, int), 0.26)] == [1, 1]


def test_finetune_selects_on_validation_and_tests_once(real_ucf_shards, tiny_ckpt, tmp_path):
    assert finetune(["--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path),
                     "--epochs", "2", "--batch-size", "1", "--val-fraction", "0.5", "--test-clips", "2", *SMALL]) == 0
    res = json.loads((tmp_path / "finetune.json").read_text())
    r = res["splits"][0]
    assert (r["train"], r["val"], r["test"]) == (1, 1, 9) and r["steps"] == 2
    assert [h["epoch"] for h in res["history"]["1"]] == [0, 1]
    assert (res["stride"], res["test_clips"], res["rates"], res["rotations"]) == (4, 2, [1], [0])


def test_table1_scratch_row_runs_from_an_ablation_yaml_on_the_real_clips(real_ucf_shards, tmp_path):
    """Table 1 rows 1-4: from scratch, with playback-rate and rotation augmentation read from the
    YAML, tested on every non-overlapping clip."""
    cfg = tmp_path / "scratch.yaml"
    cfg.write_text("finetune: {rates: [1, 2, 4, 8], rotations: [0, 90, 180, 270]}\n")
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "eval/finetune.py", "--ckpt", "none", "--backbone", "r21d_10", "--width", "0.125",
                        "--shards", str(real_ucf_shards), "--out", str(out), "--config", str(cfg), "--stride", "2",
                        "--test-clips", "all", "--epochs", "2", "--batch-size", "1", "--val-fraction", "0.5", *SMALL],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "finetune.json").read_text())
    assert (res["rates"], res["rotations"], res["stride"], res["test_clips"]) == ([1, 2, 4, 8], [0, 90, 180, 270], 2, "all")
    s = res["splits"][0]
    assert (s["train"], s["val"], s["test"], s["steps"]) == (1, 1, 9, 2) and 0 <= s["top1"] <= s["top5"] <= 1
    assert "rates [1, 2, 4, 8]" in r.stdout and "test_clips all" in r.stdout


def test_finetune_under_torchrun_two_ranks(tmp_path):
    """Two ranks on 127.0.0.1 step together (same steps per epoch) and agree on the result."""
    from preprocess.build_shards import main as build
    from tests.servers import free_port
    from tests.synthetic import make_flat_video, write_ucf_layout

    shards = tmp_path / "flat"
    classes = {c: [(f"v_{c}_g0{j}_c01", 40) for j in range(1, 6)] for c in ("Red", "Blue")}
    videos, lists = write_ucf_layout(tmp_path / "data", classes, test_every=5)
    for c, items in classes.items():
        for name, n in items:
            make_flat_video(videos / c / f"{name}.avi", n)
    assert build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(shards),
                  "--workers", "1", "--no-progress"]) == 0
    torchrun = str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run([torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "eval/finetune.py", "--ckpt", "none",
                        "--backbone", "r21d_10", "--width", "0.125", "--shards", str(shards), "--out", str(tmp_path / "o"),
                        "--epochs", "2", "--batch-size", "1", "--val-fraction", "0.25", "--test-clips", "2", *SMALL],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "o" / "finetune.json").read_text())["splits"][0]
    # 8 train videos, 2 held out: 6 left, 3 steps per epoch on each of 2 ranks
    assert (res["train"], res["val"], res["test"], res["steps"]) == (6, 2, 2, 6)
