"""Fine-tuning: its config (the authors' values, one schema, ranges checked), its clip rules against the
authors' (a fixture written from their datasets.py), what each augmentation switch does, its errors,
and runs on shards of the real clips and of synthetic ones (one process and two torchrun ranks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eval.classify import validation_split
from eval.features import normalise
from eval.finetune import main as finetune
from eval.ft_clips import (all_clip_indices, authors_test_clips, eligible_rates, eval_clip_indices,
                           random_sized_box, train_clip_indices)
from eval.ft_config import load, read_section
from eval.ft_data import device_augment, random_clip
from eval.ft_model import build
from train.augment import augment
from shards.errors import InputError
from shards.random_access import FrameReader, evenly_spaced_clips
from tests.conftest import ROOT

HERE = Path(__file__).parent
# 1 clip of 8 frames at 64 px; the real clips' split 1 has 2 train videos, so 1 a step: no BatchNorm1d
SMALL = ["--clip-len", "8", "--crop", "64", "--short-side", "64", "--no-progress"]
ONE_A_STEP = ["--batch-size", "1", "--val-fraction", "0.5", "head.bn=false"]

# The authors' fine-tuning settings, read from Katou2/CSTP: README "Finetune instruction" and
# script/r2p1d/kin400/*.sh (main_ft_mp.py --learning_rate 0.025 / 0.02 after Kinetics, --weight_decay 5e-4,
# --n_epochs 100, --batch_size 60, --pb_rate 4, --sample_duration 16, --sample_size 112), opts.py (momentum 0.9,
# lr_patience 10), preprocess_data.py get_transforms 'img' (ClipRandomSizedCrop bottom_area 0.2, aspect 3/4-4/3,
# 10 attempts; ClipColorJitter(0.4, 0.4, 0.4, 0.1, p=0.3); the flip commented out; no grayscale, no blur) and
# 'img_test' (short side 128 for 112, centre crop), r21d_byol.py (L2-normalise, BatchNorm1d, Linear; no dropout).
AUTHORS = {"optim": {"lr": 0.025, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 100, "patience": 10,
                     "batch_size": 60},
           "clips": {"clip_len": 16, "stride": 4, "crop": 112, "short_side": 128},
           "augment": {"area": [0.2, 1.0], "aspect": [0.75, 4 / 3], "attempts": 10, "p_jitter": 0.3, "brightness": 0.4,
                       "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p_flip": 0.0, "p_gray": 0.0, "p_blur": 0.0},
           "eval": {"test_clips": "authors"}, "head": {"l2": True, "bn": True, "dropout": 0.0},
           "rates": [1], "rotations": [0]}


def subset_of(expected: dict, got: dict, where: str = "") -> None:
    for k, v in expected.items():
        if isinstance(v, dict):
            subset_of(v, got[k], f"{where}{k}.")
        else:
            assert got[k] == pytest.approx(v), f"{where}{k}: {got[k]} != {v}"


def test_print_config_values_are_the_authors(capsys):
    assert finetune(["--print-config"]) == 0
    subset_of(AUTHORS, yaml.safe_load(capsys.readouterr().out)["finetune"])
    assert finetune(["--help-config"]) == 0
    keys = capsys.readouterr().out.splitlines()
    assert "optim.lr (0.025): SGD learning rate" in keys[4] and len(keys) == len(set(keys)) > 30
    k400 = str(ROOT / "configs/finetune_k400.yaml")
    assert finetune(["--print-config", "--config", k400]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["finetune"]["optim"]["lr"] == 0.02
    # by path and as the console script, each printing the same YAML and exiting 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([*cmd, "--print-config"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for cmd in ([sys.executable, "eval/finetune.py"], [str(Path(sys.executable).parent / "cstp-finetune")])]
    (by_path, _), (script, _) = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and by_path == script
    subset_of(AUTHORS, yaml.safe_load(by_path)["finetune"])
    # what it prints is a config --config reads back to the same settings
    assert load(str(ROOT / "configs/finetune.yaml")) == load()


def test_test_clip_positions_are_the_authors_rule():
    fx = yaml.safe_load((HERE / "authors_clips.yaml").read_text())
    for n, clips in fx["test"].items():
        got = eval_clip_indices(n, fx["clip_len"], fx["stride"], "authors")
        assert got.tolist() == clips, n
    rng = np.random.default_rng(0)
    starts = {int(train_clip_indices(200, fx["clip_len"], fx["stride"], rng)[0]) for _ in range(3000)}
    assert starts == set(range(fx["train"][200]["first_starts"][0], fx["train"][200]["first_starts"][1] + 1))
    assert train_clip_indices(49, fx["clip_len"], fx["stride"], rng).tolist() == fx["train"][49]


def test_a_training_clip_has_frames_one_step_apart_inside_the_video():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = train_clip_indices(100, 8, 4, rng)
        assert (np.diff(idx) == 4).all() and idx[0] >= 0 and idx[-1] <= 99
    assert train_clip_indices(10, 8, 4, rng).tolist() == [0, 4, 8, 0, 4, 8, 0, 4]      # loops, as the authors'


def test_other_test_clip_rules_still_hold():
    idx = all_clip_indices(100, 8, 4)
    assert idx[:, 0].tolist() == [0, 32, 64] and (np.diff(idx, axis=1) == 4).all() and idx.max() <= 99
    assert len(np.unique(idx)) == idx.size
    assert all_clip_indices(125, 8, 4)[:, 0].tolist() == [0, 32, 64, 96]
    assert np.array_equal(eval_clip_indices(100, 8, 4, 10), evenly_spaced_clips(100, 10, 8, 4))
    assert np.array_equal(eval_clip_indices(100, 8, 4, "authors"), authors_test_clips(100, 8, 4))


def test_playback_rates_are_drawn_among_those_whose_clip_fits():
    assert eligible_rates(200, 16, 4, [1, 2, 4, 8]) == [1, 2]          # (16-1) x 4 x 4 = 240 frames do not fit
    assert eligible_rates(40, 16, 4, [2, 4]) == [2]                    # none fits: the smallest, looped


class Spy:
    """A FrameReader that records which frames each read asked for."""

    def __init__(self, reader):
        self.reader, self.index, self.asked = reader, reader.index, []

    def read_frames(self, row, frames):
        self.asked.append(np.asarray(frames))
        return self.reader.read_frames(row, frames)


def test_training_clips_take_the_playback_rate_and_the_rotation_from_the_config(real_ucf_shards):
    reader = FrameReader(str(real_ucf_shards))
    row = int(np.argmax(reader.index.n_frames))
    spy = Spy(reader)
    small = {"clips": {"stride": 3, "clip_len": 8, "crop": 64, "short_side": 64}}
    for _ in range(12):
        random_clip(spy, row, load(values={**small, "rates": [2, 4]}), np.random.default_rng(len(spy.asked)))
    assert {int(np.diff(a)[0]) for a in spy.asked} == {6, 12}           # stride x rate, both rates drawn
    plain = random_clip(reader, row, load(values=small), np.random.default_rng(5))
    turned = random_clip(reader, row, load(values={**small, "rotations": [90]}), np.random.default_rng(5))
    assert turned.shape == plain.shape == (3, 8, 64, 64)
    assert torch.equal(turned, torch.rot90(plain, 1, dims=(2, 3))) and not torch.equal(turned, plain)


def test_the_training_crop_covers_the_configured_share_of_the_frame():
    rng = np.random.default_rng(0)
    for lo, hi in ((0.2, 1.0), (0.5, 0.6)):
        boxes = [random_sized_box(128, 171, (lo, hi), (0.75, 4 / 3), 10, rng) for _ in range(3000)]
        share = np.array([w * h for _, _, w, h in boxes]) / (128 * 171)
        fell_back = np.array([b == (21, 0, 128, 128) for b in boxes])
        drawn = share[~fell_back]
        assert drawn.min() >= lo - 0.01 and drawn.max() <= hi + 0.01, (lo, hi, drawn.min(), drawn.max())
        assert drawn.min() < lo + 0.05 and drawn.max() > hi - 0.05          # the whole range is used
        assert all(0 <= x and 0 <= y and x + w <= 171 and y + h <= 128 for x, y, w, h in boxes)
    # an area the frame cannot hold at that aspect: the centre square, as the authors' fallback
    assert random_sized_box(128, 171, (1.0, 1.0), (4.0, 4.0), 10, rng) == (21, 0, 128, 128)


def clips_of(seed: int, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 4, 32, 32), generator=g, dtype=torch.uint8)


def augmented(values: dict, x: torch.Tensor) -> torch.Tensor:
    return augment(x, device_augment(load(values=values)), torch.Generator().manual_seed(1))


def test_each_augmentation_switch_changes_what_it_claims_and_nothing_else():
    x = clips_of(0)
    plain = x.float() / 255               # what the device augmentation hands on to normalise()
    off = {"augment": {"p_jitter": 0.0}}
    assert torch.allclose(augmented(off, x), plain, atol=1e-5)                     # defaults but jitter: no flip, no blur
    jittered = augmented({"augment": {"p_jitter": 1.0}}, x)
    assert all(not torch.allclose(jittered[i], plain[i], atol=1e-3) for i in range(6))
    # the default p 0.3: some clips keep their colours, some do not
    many = clips_of(3, 60)
    d = augmented({}, many)
    kept = np.mean([torch.allclose(d[i], many[i].float() / 255, atol=1e-5) for i in range(60)])
    assert 0.5 < kept < 0.9, kept                                                   # 0.7 expected
    flipped = augmented({"augment": {"p_jitter": 0.0, "p_flip": 1.0}}, x)
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-5)
    blurred = augmented({"preset": "base", "augment": {"p_jitter": 0.0, "p_blur": 1.0}}, x)
    assert blurred.std() < plain.std() * 0.9 and torch.allclose(blurred.mean(), plain.mean(), atol=0.05)
    gray = augmented({"augment": {"p_jitter": 0.0, "p_gray": 1.0}}, x)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-4) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-4)


def test_the_base_preset_adds_blur_and_explicit_keys_win_over_it():
    assert load().augment.p_blur == 0.0
    assert load(values={"preset": "base"}).augment.p_blur == 0.5
    assert load(values={"preset": "base", "augment": {"p_blur": 0.2}}).augment.p_blur == 0.2
    assert load(str(ROOT / "configs/ablations/table1_row01.yaml")).augment.p_blur == 0.5


def test_the_head_is_l2_then_batch_norm_then_linear_and_the_frozen_backbone_takes_no_step():
    from train.backbones import build_backbone

    bb = build_backbone("r21d_10", 0.125)
    model = build(bb, 5, load(), frozen=True)
    assert [type(m).__name__ for m in (model.bn, model.fc)] == ["BatchNorm1d", "Linear"] and model.l2
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert sum(p.requires_grad for p in model.parameters()) == 4          # bn weight, bias; fc weight, bias
    f = torch.randn(4, bb.feature_dim)
    want = model.fc(model.bn(torch.nn.functional.normalize(f, dim=1)))
    model.backbone.forward = lambda x: f
    assert torch.allclose(model(torch.zeros(4)), want)


def test_the_finetune_section_of_an_ablation_yaml_sets_rates_rotations_and_the_preset(tmp_path):
    cfg = tmp_path / "scratch_rate_rot.yaml"
    cfg.write_text("model: {backbone: r21d_10}\nloss: {rate: 1.0}\n"
                   "finetune: {preset: base, rates: [1, 2, 4, 8], rotations: [0, 90, 180, 270]}\n")
    a = load(str(cfg))
    assert (a.rates, a.rotations, a.clips.stride, a.eval.test_clips, a.augment.p_blur) == (
        [1, 2, 4, 8], [0, 90, 180, 270], 4, "authors", 0.5)
    b = load(str(cfg), ["rotations=[0]"], {"eval.test_clips": "all"})     # the command line wins
    assert (b.rates, b.rotations, b.eval.test_clips) == ([1, 2, 4, 8], [0], "all")


@pytest.mark.parametrize("text, msg", [
    ("finetune: {rates: [1, 2], rotation: [0]}\n", "unknown key finetune.rotation; valid keys here: preset, rates"),
    ("finetune: {rotations: [0, 45]}\n", "finetune.rotations=[0, 45] is not allowed: must be a non-empty list of multiples of 90"),
    ("finetune: {rates: [0]}\n", "finetune.rates=[0] is not allowed: must be a non-empty list of whole numbers >= 1"),
    ("finetune: {optim: {lr: 0}}\n", "finetune.optim.lr=0.0 is not allowed: must be > 0"),
    ("finetune: {optim: {lr: fast}}\n", "finetune.optim.lr: Value 'fast' of type 'str' could not be converted to Float"),
    ("finetune: {augment: {area: [0.5, 0.2]}}\n", "finetune.augment.area=[0.5, 0.2] is not allowed: must be [lo, hi]"),
    ("finetune: {augment: {p_jitter: 1.5}}\n", "finetune.augment.p_jitter=1.5 is not allowed: must be a probability"),
    ("finetune: {augment: {hue: 0.7}}\n", "finetune.augment.hue=0.7 is not allowed: must be in [0, 0.5]"),
    ("finetune: {augment: {blur_sigma: [2, 0.1]}}\n", "finetune.augment.blur_sigma=[2.0, 0.1] is not allowed"),
    ("finetune: {eval: {test_clips: some}}\n", "finetune.eval.test_clips='some' is not allowed: must be 'authors'"),
    ("finetune: {head: {init: xavier}}\n", "finetune.head.init='xavier' is not allowed: must be 'authors' or 'pytorch'"),
    ("finetune: {preset: strong}\n", "finetune.preset='strong' is not allowed: must be 'authors' or 'base'"),
    ("finetune: {clips: {crop: 200, short_side: 128}}\n", "finetune.clips.crop=200 is larger than finetune.clips.short_side=128"),
    ("model: {backbone: c3d}\n", "has no finetune: section"),
    ("finetune: [1\n", "not valid YAML"),
])
def test_a_bad_finetune_value_is_one_line_naming_the_key(tmp_path, text, msg):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as exc:
        load(str(cfg))
    assert msg in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_bad_flags_say_what_would_work(real_ucf_shards, tmp_path, capsys):
    base = ["--ckpt", "none", "--width", "0.125", "--shards", str(real_ucf_shards), "--out", str(tmp_path), *SMALL]
    cases = [
        (["--val-fraction", "0"], "finetune.eval.val_fraction=0.0 is not allowed: must be in (0, 1)"),
        # split 1 has 2 train videos, both SoccerJuggling: 10% of 2 rounds to none
        (["--val-fraction", "0.1"], "no validation videos: --val-fraction 0.1 of at most 2 train videos per class "
                                    "rounds to none; use --val-fraction 0.26 or more"),
        (["--val-fraction", "0.5", "--batch-size", "2"], "split 1: 1 train video (after 1 held out) cannot fill one "
                                                         "batch of finetune.optim.batch_size=2; the head's BatchNorm1d "
                                                         "needs 2 clips a step: lower eval.val_fraction"),
        (["--val-fraction", "0.5", "--batch-size", "1"], "finetune.optim.batch_size=1: the head's BatchNorm1d needs "
                                                         "at least 2 clips a step; use --batch-size 2 or more, or head.bn=false"),
        (["--rates", "1,x"], "argument --rates: invalid literal for int() with base 10: 'x'"),
        (["--test-clips", "some"], "finetune.eval.test_clips='some' is not allowed"),
        (["--stride", "0"], "finetune.clips.stride=0 is not allowed: must be >= 1"),
        (["optim.lr"], "override 'optim.lr' is not of the form section.key=value"),
        (["--config", str(tmp_path / "none.yaml")], f"--config {tmp_path / 'none.yaml'}: no such file"),
    ]
    for extra, msg in cases:
        capsys.readouterr()
        try:
            code = finetune([*base, *extra])
        except SystemExit as exc:           # argparse's own errors (a flag's type)
            code = exc.code
        assert code == 2, extra
        err = capsys.readouterr().err.strip()
        assert msg in err.splitlines()[-1] and err.splitlines()[-1].startswith("finetune.py: "), err
    # and the fraction it suggests does hold one out
    assert [len(x) for x in validation_split(np.arange(2), np.zeros(2, int), 0.26)] == [1, 1]


def test_finetune_selects_on_validation_and_tests_once(real_ucf_shards, tiny_ckpt, tmp_path):
    assert finetune(["--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path),
                     "--epochs", "2", "--test-clips", "2", *ONE_A_STEP, *SMALL]) == 0
    res = json.loads((tmp_path / "finetune.json").read_text())
    r = res["splits"][0]
    assert (r["train"], r["val"], r["test"]) == (1, 1, 9) and r["steps"] == 2
    assert [h["epoch"] for h in res["history"]["1"]] == [0, 1]
    assert all(np.isfinite(h["val_loss"]) and h["lr"] == 0.025 for h in res["history"]["1"])
    c = res["config"]
    assert (c["clips"]["stride"], c["eval"]["test_clips"], c["rates"], c["rotations"]) == (4, "2", [1], [0])


def test_table1_scratch_row_runs_from_an_ablation_yaml_on_the_real_clips(real_ucf_shards, tmp_path):
    """Table 1 rows 1-4: from scratch, with the Base preset and playback-rate and rotation augmentation
    read from the YAML, tested on the authors' test clips; run by path."""
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "eval/finetune.py", "--ckpt", "none", "--backbone", "r21d_10", "--width", "0.125",
                        "--shards", str(real_ucf_shards), "--out", str(out), "--config",
                        str(ROOT / "configs/ablations/table1_row04.yaml"), "--stride", "2", "--epochs", "2",
                        *ONE_A_STEP, *SMALL], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "finetune.json").read_text())
    c = res["config"]
    assert (c["rates"], c["rotations"], c["clips"]["stride"], c["eval"]["test_clips"], c["augment"]["p_blur"]) == (
        [1, 2, 4, 8], [0, 90, 180, 270], 2, "authors", 0.5)
    s = res["splits"][0]
    assert (s["train"], s["val"], s["test"], s["steps"]) == (1, 1, 9, 2) and 0 <= s["top1"] <= s["top5"] <= 1
    assert "rates [1, 2, 4, 8]" in r.stdout and "test clips authors" in r.stdout


def test_finetune_under_torchrun_two_ranks(flat_shards, tmp_path):
    """Two ranks on 127.0.0.1 step together (a batch of 2 over both, the default L2 + BatchNorm1d head
    synchronised) and agree on the result."""
    from tests.servers import free_port

    torchrun = str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run([torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "eval/finetune.py", "--ckpt", "none",
                        "--backbone", "r21d_10", "--width", "0.125", "--shards", str(flat_shards), "--out", str(tmp_path / "o"),
                        "--epochs", "2", "--batch-size", "2", "--val-fraction", "0.25", "--test-clips", "2", *SMALL],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "o" / "finetune.json").read_text())["splits"][0]
    # 8 train videos, 2 held out: 6 left, 3 steps of 2 per epoch (1 on each rank)
    assert (res["train"], res["val"], res["test"], res["steps"]) == (6, 2, 2, 6)


def test_a_batch_that_does_not_divide_over_the_ranks_is_refused():
    from eval.ft_plan import plan

    assert plan(100, 10, load(), 2, "1") == (30, 1)                      # the authors': 60 in all, 30 a process
    with pytest.raises(InputError, match="batch_size=60 .* does not divide over 7 ranks; use a multiple of 7, e.g. 56"):
        plan(100, 10, load(), 7, "1")
