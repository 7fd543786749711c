"""Evaluation takes what the checkpoint knows: a run folder's newest valid checkpoint, the backbone.pt
export, the clip length, crop and backbone it was trained with; a flag that disagrees is refused
(backbone, width) or overrides with one warning line (clips); the JSON records what was used."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from eval.ckpt_source import resolve_path, settle, trained_clips
from eval.finetune import main as finetune
from eval.linear_probe import main as linear_probe
from eval.retrieval import main as retrieval
from train.augment import MEAN, STD

FAST = ["--clips", "2", "--no-progress", "--figure-queries", "0"]


def test_the_checkpoint_says_which_clips_it_saw():
    cfg = {"data": {"clip_len": 8, "out_size": 64}, "model": {"backbone": "r21d_10"}}
    assert trained_clips(cfg) == {"clip_len": 8, "crop": 64, "short_side": 73, "mean": list(MEAN), "std": list(STD)}
    assert [trained_clips(None)[k] for k in ("clip_len", "crop", "short_side")] == [16, 112, 128]


def test_a_run_folder_means_its_newest_valid_checkpoint_and_says_which(tiny_run, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_run, folder)
    assert resolve_path(str(folder)) == str(folder / "ckpt-00000004.pt")
    assert "using " + str(folder / "ckpt-00000004.pt") in capsys.readouterr().err
    (folder / "ckpt-00000004.pt").write_bytes(b"")                 # the newest is unusable: the one before
    assert resolve_path(str(folder)) == str(folder / "ckpt-00000002.pt")
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 newer one(s) skipped" in err and "empty file" in err, err


def test_retrieval_takes_clip_length_and_crop_from_the_checkpoint(real_ucf_shards, tiny_run, tmp_path, capsys):
    assert retrieval(["--ckpt", str(tiny_run), "--shards", str(real_ucf_shards), "--out", str(tmp_path), *FAST]) == 0
    res = json.loads((tmp_path / "retrieval.json").read_text())
    assert (res["settings"]["clip_len"], res["settings"]["crop"], res["settings"]["short_side"]) == (8, 64, 73)
    capsys.readouterr()
    # a disagreeing clip length overrides it with one warning line, and the JSON says what was used
    assert retrieval(["--ckpt", str(tiny_run / "ckpt-00000004.pt"), "--shards", str(real_ucf_shards), "--out",
                      str(tmp_path), "--clip-len", "4", *FAST]) == 0
    warn = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert warn == ["retrieval.py: warning: --clip-len 4 overrides the checkpoint's 8 (it was trained so)"]
    assert json.loads((tmp_path / "retrieval.json").read_text())["settings"]["clip_len"] == 4
    # a crop given without a short side: the short side follows the crop used, at the authors' 128:112
    assert settle("x", {"crop": 48, "clip_len": None, "short_side": None}, {"data": {"out_size": 64}})["short_side"] == 55


def test_another_backbone_or_width_than_the_checkpoints_is_refused(real_ucf_shards, tiny_run, tmp_path, capsys):
    for flag in (["--backbone", "c3d"], ["--width", "1.0"]):
        assert retrieval(["--ckpt", str(tiny_run / "ckpt-00000004.pt"), "--shards", str(real_ucf_shards),
                          "--out", str(tmp_path), *flag, *FAST]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"retrieval.py: {flag[0]} {flag[1]}: " in err, err
        assert "holds a r21d_10 of width 0.125" in err


def test_backbone_pt_is_accepted_by_retrieval_linear_probe_and_finetune(real_ucf_shards, tiny_run, tmp_path):
    export = str(tiny_run / "backbone.pt")
    base = ["--ckpt", export, "--shards", str(real_ucf_shards), "--no-progress"]
    assert retrieval([*base, "--out", str(tmp_path / "r"), "--clips", "2", "--figure-queries", "0"]) == 0
    assert linear_probe([*base, "--out", str(tmp_path / "l"), "--protocol", "full-batch", "--clips", "2",
                         "--epochs", "2", "--cache", str(tmp_path / "cache")]) == 0
    assert finetune([*base, "--out", str(tmp_path / "f"), "--epochs", "1", "--batch-size", "1", "--val-fraction", "0.5",
                     "--test-clips", "1", "head.bn=false"]) == 0
    ft = json.loads((tmp_path / "f" / "finetune.json").read_text())
    assert ft["checkpoint"] == export and (ft["config"]["clips"]["clip_len"], ft["config"]["clips"]["crop"]) == (8, 64)
    # the weights are the run's last checkpoint's
    last = torch.load(tiny_run / "ckpt-00000004.pt", weights_only=True)["backbone"]
    exported = torch.load(export, weights_only=True)
    assert exported.keys() == last.keys() and all(torch.equal(exported[k], last[k]) for k in last)
