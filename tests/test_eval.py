"""eval/: retrieval, linear probe and fine-tuning on shards of the real clips, and their errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval.classify import carve_validation, video_accuracy
from eval.features import extract, load_backbone
from eval.finetune import main as finetune
from eval.linear_probe import main as linear_probe
from eval.retrieval import main as retrieval
from shards.random_access import FrameReader
from tests.test_pretrain import run


@pytest.fixture(scope="module")
def tiny_ckpt(real_ucf_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    assert run(real_ucf_shards, out, "train.max_steps=2") == 0
    return out / "ckpt-00000002.pt"


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


def test_feature_extraction_leaves_batch_norm_statistics_alone(real_ucf_shards, tiny_ckpt):
    bb, _ = load_backbone(str(tiny_ckpt))
    bb.train()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    reader = FrameReader(str(real_ucf_shards))
    f = extract(bb, reader, reader.index.select()[:2], n_clips=2, clip_len=8, crop=64, progress=False)
    assert f.shape[:2] == (2, 2)
    for k, v in bb.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_linear_probe_runs_and_caches(real_ucf_shards, tiny_ckpt, tmp_path):
    args = ["--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path),
            "--cache", str(tmp_path / "cache"), "--epochs", "20", *SMALL]
    assert linear_probe(args) == 0
    res = json.loads((tmp_path / "linear_probe.json").read_text())["splits"][0]
    assert (res["train"], res["test"]) == (2, 9) and 0 <= res["top1"] <= res["top5"] <= 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert linear_probe(args) == 0           # second run reads the cache
    assert json.loads((tmp_path / "linear_probe.json").read_text())["splits"][0] == res


def test_finetune_selects_on_validation_and_tests_once(real_ucf_shards, tiny_ckpt, tmp_path):
    assert finetune(["--ckpt", str(tiny_ckpt), "--shards", str(real_ucf_shards), "--out", str(tmp_path),
                     "--epochs", "2", "--batch-size", "1", "--val-fraction", "0.5", "--clip-len", "8", "--crop", "64",
                     "--clips", "2", "--val-clips", "1", "--no-progress"]) == 0
    res = json.loads((tmp_path / "finetune.json").read_text())
    r = res["splits"][0]
    assert (r["train"], r["val"], r["test"]) == (1, 1, 9) and r["steps"] == 2
    assert [h["epoch"] for h in res["history"]["1"]] == [0, 1]


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


def test_finetune_under_torchrun_two_ranks(tmp_path):
    """Two ranks on 127.0.0.1 step together (same steps per epoch) and agree on the result."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import ROOT
    from tests.servers import free_port

    shards = tmp_path / "flat"
    from tests.synthetic import make_flat_video, write_ucf_layout
    from preprocess.build_shards import main as build

    classes = {c: [(f"v_{c}_g0{j}_c01", 40) for j in range(1, 6)] for c in ("Red", "Blue")}
    videos, lists = write_ucf_layout(tmp_path / "data", classes, test_every=5)
    for c, items in classes.items():
        for name, n in items:
            make_flat_video(videos / c / f"{name}.avi", n)
    assert build(["--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(shards),
                  "--workers", "1", "--no-progress"]) == 0
    torchrun = str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run([torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "eval/finetune.py", "--ckpt", "none",
                        "--backbone", "r21d_10", "--width", "0.125", "--shards", str(shards), "--out", str(tmp_path / "o"),
                        "--epochs", "2", "--batch-size", "1", "--val-fraction", "0.25", "--clip-len", "8", "--crop", "64",
                        "--clips", "2", "--val-clips", "1", "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "o" / "finetune.json").read_text())["splits"][0]
    # 8 train videos, 2 held out: 6 left, 3 steps per epoch on each of 2 ranks
    assert (res["train"], res["val"], res["test"], res["steps"]) == (6, 2, 2, 6)
