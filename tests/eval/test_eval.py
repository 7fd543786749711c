"""eval/: retrieval, linear probe and fine-tuning on shards of the real clips, and their errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from eval.classify import carve_validation, video_accuracy
from eval.features import extract
from eval.finetune import main as finetune
from eval.linear_probe import main as linear_probe
from eval.retrieval import main as retrieval
from shards.random_access import FrameReader
from tests.conftest import ROOT
from train.checkpoint import load_backbone


SMALL = ["--clips", "3", "--clip-len", "8", "--crop", "64", "--no-progress"]


def test_retrieval_from_a_pretraining_checkpoint(real_ucf_shards, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "ret"
    feats = tmp_path / "f.npz"
    assert retrieval(["--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(out),
                      "--features-out", str(feats), *SMALL]) == 0
    res = json.loads((out / "retrieval.json").read_text())
    # UCF-101 split 1: the two SoccerJuggling clips are train (gallery), the other nine test (queries)
    assert (res["gallery"], res["queries"]) == (2, 9)
    assert set(res) >= {"R@1", "R@5", "R@10", "R@20", "R@50"}
    assert all(0 <= res[f"R@{k}"] <= 1 for k in (1, 5, 10, 20, 50))
    assert res["R@50"] == 0.0           # no query's class is in the gallery: nothing can be hit
    # k beyond the 2-video gallery: R@k is R@2, and both the JSON and the table say so
    assert res["capped"] == {"R@5": 2, "R@10": 2, "R@20": 2, "R@50": 2}
    txt = (out / "retrieval.txt").read_text()
    assert "R@1 " in txt and "R@5*" in txt and "only 2 videos: R@5, R@10, R@20, R@50 count all of them" in txt
    assert (out / "retrieval.png").stat().st_size > 1000 and "R@1" in (out / "retrieval.txt").read_text()
    # features saved and reloaded give the same figures without a backbone pass
    again = tmp_path / "again"
    assert retrieval(["--ckpt", "unused", "--features-in", str(feats), "--out", str(again), "--figure-queries", "0"]) == 0
    res2 = json.loads((again / "retrieval.json").read_text())
    assert {k: v for k, v in res2.items() if k.startswith("R@")} == {k: v for k, v in res.items() if k.startswith("R@")}


def test_random_init_baseline(real_ucf_shards, tmp_path):
    assert retrieval(["--ckpt", "none", "--backbone", "r21d_10", "--width", "0.125", "--shards", str(real_ucf_shards),
                      "--out", str(tmp_path), "--figure-queries", "0", *SMALL]) == 0
    assert "random init" in json.loads((tmp_path / "retrieval.json").read_text())["model"]


def test_bad_checkpoints_and_splits_get_one_line_errors(real_ucf_shards, tiny_ckpt, tmp_path, capsys):
    base = ["--shards", str(real_ucf_shards), "--out", str(tmp_path), *SMALL]
    (tmp_path / "notes.txt").write_text("hello")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:2000])
    foreign = tmp_path / "foreign.pt"
    ck = torch.load(tiny_ckpt, weights_only=True)
    ck["config"]["model"]["backbone"] = "c3d"
    torch.save(ck, foreign)
    cases = [(tmp_path / "missing.pt", "no such checkpoint"), (tmp_path / "notes.txt", "not a readable checkpoint"),
             (truncated, "not a readable checkpoint"), (foreign, "do not fit c3d")]
    for path, msg in cases:
        capsys.readouterr()
        assert retrieval(["--ckpt", str(path), *base]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err
    assert retrieval(["--ckpt", str(tiny_ckpt), "--split", "2", *base]) == 2
    assert "split 2 has no test videos" in capsys.readouterr().err


SCRIPTS = {"retrieval": retrieval, "linear_probe": linear_probe, "finetune": finetune}


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_empty_or_truncated_checkpoint_exits_2_with_one_line_naming_it(script, real_ucf_shards, tiny_ckpt, tmp_path,
                                                                          capsys):
    empty, cut = tmp_path / "empty.pt", tmp_path / "cut.pt"
    empty.write_bytes(b"")
    cut.write_bytes(tiny_ckpt.read_bytes()[: len(tiny_ckpt.read_bytes()) // 2])
    for path in (empty, cut):
        capsys.readouterr()
        assert SCRIPTS[script](["--ckpt", str(path), "--shards", str(real_ucf_shards), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"{script}.py: {path}: "), err
        assert "empty file" in err or "truncated" in err, err
    # run by path, as users do: the same one line, no traceback
    r = subprocess.run([sys.executable, f"eval/{script}.py", "--ckpt", str(empty), "--shards", str(real_ucf_shards),
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"{script}.py: {empty}: empty file (0 bytes), "
                                                                   "not a checkpoint"], r.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_defaults_and_shards_is_required(script, capsys):
    with pytest.raises(SystemExit) as exc:
        SCRIPTS[script](["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())          # help lines wrap at the terminal's width
    assert "112 with --ckpt none)" in flat and "(default: runs/eval)" in flat
    if script != "retrieval":        # retrieval can work from --features-in alone
        with pytest.raises(SystemExit) as exc:
            SCRIPTS[script](["--ckpt", "none"])
        assert exc.value.code == 2 and "--shards" in capsys.readouterr().err


def test_a_split_without_test_videos_names_the_splits_that_have_them(real_ucf_shards, tmp_path, capsys):
    assert linear_probe(["--ckpt", "none", "--shards", str(real_ucf_shards), "--splits", "1,2", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "linear_probe.py: split 2 has no test videos in these shards; use --splits 1"
    assert retrieval(["--ckpt", "none", "--shards", str(real_ucf_shards), "--split", "x", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("retrieval.py: split 'x' is not in these shards (they have 1, 2, 3); "
                                               "use --split 1")
    assert retrieval(["--ckpt", "none", "--out", str(tmp_path)]) == 2
    assert "--shards is required" in capsys.readouterr().err


def test_feature_extraction_leaves_batch_norm_statistics_alone(real_ucf_shards, tiny_ckpt):
    bb, _ = load_backbone(str(tiny_ckpt))
    bb.train()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    reader = FrameReader(str(real_ucf_shards))
    f = extract(bb, reader, reader.index.select()[:2], n_clips=2, clip_len=8, crop=64, progress=False)
    assert f.shape[:2] == (2, 2)
    for k, v in bb.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_linear_probe_default_protocol_is_the_authors_frozen_path_and_runs_2_steps(flat_shards, tmp_path):
    out = tmp_path / "lp"
    assert linear_probe(["--ckpt", "none", "--width", "0.125", "--shards", str(flat_shards), "--out", str(out),
                         "--batch-size", "2", "--max-steps", "2", "--val-fraction", "0.25", "--clip-len", "8",
                         "--crop", "64", "--no-progress"]) == 0
    res = json.loads((out / "linear_probe.json").read_text())
    assert res["protocol"] == "authors" and res["frozen"] is True
    s = res["splits"][0]
    assert (s["train"], s["val"], s["test"], s["steps"]) == (6, 2, 2, 2) and 0 <= s["top1"] <= s["top5"] <= 1
    c = res["config"]
    assert (c["clips"]["stride"], c["optim"]["lr"], c["head"]["bn"], c["frozen"]["bn"]) == (4, 0.025, True, "train")


def test_linear_probe_print_config_is_the_finetune_config(capsys):
    assert linear_probe(["--print-config", "--lr", "0.1"]) == 0
    assert "lr: 0.1" in capsys.readouterr().out


def test_linear_probe_runs_and_caches(real_ucf_shards, tiny_ckpt, tmp_path):
    args = ["--protocol", "full-batch", "--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path),
            "--cache", str(tmp_path / "cache"), "--epochs", "20", *SMALL]
    assert linear_probe(args) == 0
    res = json.loads((tmp_path / "linear_probe.json").read_text())["splits"][0]
    assert (res["train"], res["test"]) == (2, 9) and 0 <= res["top1"] <= res["top5"] <= 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert linear_probe(args) == 0           # second run reads the cache
    assert json.loads((tmp_path / "linear_probe.json").read_text())["splits"][0] == res
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def cached(folder):
    return {p.name: np.load(p)["features"] for p in folder.glob("*.npz")}


def test_linear_probe_cache_follows_the_checkpoint_content_not_its_path(real_ucf_shards, tiny_ckpt, tmp_path):
    """A new checkpoint written where an old one was gets its own features (it once got the old ones)."""
    ckpt, cache = tmp_path / "ckpt.pt", tmp_path / "cache"
    ckpt.write_bytes(tiny_ckpt.read_bytes())                               # checkpoint A
    args = ["--ckpt", str(ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path), "--cache", str(cache),
            "--epochs", "5", *SMALL, "--protocol", "full-batch"]
    assert linear_probe(args) == 0
    (a_name, a_feats), = cached(cache).items()
    b = torch.load(tiny_ckpt, weights_only=True)                            # checkpoint B, same path
    b["backbone"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in b["backbone"].items()}
    torch.save(b, ckpt)
    assert linear_probe(args) == 0
    feats = cached(cache)
    assert len(feats) == 2
    b_feats = next(v for k, v in feats.items() if k != a_name)
    assert b_feats.shape == a_feats.shape and not np.allclose(b_feats, a_feats)
    # the same content at another path, and the same checkpoint with other settings
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(ckpt.read_bytes())
    assert linear_probe(["--ckpt", str(moved), *args[2:]]) == 0 and len(cached(cache)) == 2
    assert linear_probe([*args, "--clips", "2"]) == 0 and len(cached(cache)) == 3


def test_carve_validation_is_per_class_and_disjoint():
    rows = np.arange(100, 140)
    labels = np.repeat([0, 1, 2, 3], 10)
    train, val = carve_validation(rows, labels, 0.2, seed=0)
    assert len(val) == 8 and set(train) | set(val) == set(rows) and not set(train) & set(val)
    assert all(((labels[np.searchsorted(rows, val)]) == c).sum() == 2 for c in range(4))
    assert np.array_equal(carve_validation(rows, labels, 0.2, seed=0)[1], val)


def test_video_accuracy_averages_clip_logits():
    logits = torch.tensor([[[5.0, 0, 0], [0, 1, 0]], [[0, 0, 1.0], [0, 3, 0]]])
    acc = video_accuracy(logits, torch.tensor([0, 2]))
    assert acc == {"top1": 0.5, "top5": 1.0}
