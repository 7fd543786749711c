"""train/pretrain.py end to end on shards of the real clips: one process, resume after a crash,
checkpoints and configs, and two torchrun nodes on 127.0.0.1."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from tests.conftest import ROOT
from tests.servers import free_port
from train.checkpoint import KEYS, CheckpointError, find_resume, load_checkpoint
from train.config import ConfigError, load_config
from train.pretrain import main as pretrain

TINY = str(ROOT / "configs" / "tiny_cpu.yaml")


def run(shards, out, *extra):
    return pretrain(["--config", TINY, f"data.shards={shards}", "data.split=all", "data.batch_size=2", "train.tensorboard=false",
                     "--out", str(out), *extra])


def losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, (Path(out) / "log.jsonl").read_text().splitlines())}


def test_a_run_logs_every_term_and_writes_the_checkpoint_contract(real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=4", "train.ckpt_every=2") == 0
    recs = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    for k in ("loss_contrastive", "loss_rate", "loss_rotation", "loss_overlap_s", "loss_overlap_t",
              "acc_rate", "acc_rotation", "acc_overlap_s", "acc_overlap_t", "lr", "clips_per_s", "data_wait"):
        assert k in recs[0]
    assert 0 <= recs[0]["data_wait"] <= 1
    ck = load_checkpoint(out / "ckpt-00000004.pt")
    assert set(KEYS) <= set(ck) and ck["step"] == 4 and ck["config"]["model"]["backbone"] == "r21d_10"
    assert (out / "backbone.pt").is_file()
    assert not list(out.glob(".*tmp*"))


def run_process(shards, out, *extra):
    """pretrain.py as its own process, as users run it (and with the same numerics each time)."""
    return subprocess.run([sys.executable, "train/pretrain.py", "--config", TINY, f"data.shards={shards}", "data.split=all",
                           "data.batch_size=2", "train.tensorboard=false", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True)


def test_resume_after_a_crash_reproduces_the_uninterrupted_losses(real_ucf_shards, tmp_path):
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    steps = ["train.max_steps=8", "train.ckpt_every=3"]
    assert run_process(real_ucf_shards, whole, *steps).returncode == 0
    # a process that dies after step 7 (last checkpoint at step 6), then is resumed
    r = run_process(real_ucf_shards, crashed, *steps, "--exit-after-step", "7")
    assert r.returncode == 3, r.stderr[-2000:]
    assert not (crashed / "ckpt-00000008.pt").exists()
    r = run_process(real_ucf_shards, crashed, *steps, "--resume", "auto")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "ckpt-00000006.pt at step 6 (epoch 1, batch 1)" in r.stdout
    a, b = losses(whole), losses(crashed)      # b: the resumed run's records for steps 7 and 8
    assert sorted(b) == list(range(1, 9))
    for step in range(1, 9):
        assert b[step] == pytest.approx(a[step], rel=1e-6), (step, a, b)


def test_resume_skips_a_corrupt_newest_checkpoint(real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=4", "train.ckpt_every=2") == 0
    (out / "ckpt-00000004.pt").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping unusable checkpoint"):
        path, ck = find_resume(out)
    assert path.name == "ckpt-00000002.pt" and ck["step"] == 2


def test_loading_refuses_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="no format_version"):
        load_checkpoint(tmp_path / "y.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format_version": 1, "config": {}, "backbone": Evil()}, tmp_path / "z.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "z.pt")       # weights_only: no arbitrary unpickling
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_errors_name_the_valid_choices(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*'lr'"):
        load_config(TINY, ["data.shards=x", "optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet50'; valid: \['c3d', 'r21d_10'"):
        load_config(TINY, ["data.shards=x", "model.backbone=resnet50"])
    with pytest.raises(ConfigError, match=r"unknown method 'swav'; valid: \['byol', 'moco', 'simclr', 'simsiam'\]"):
        load_config(TINY, ["data.shards=x", "model.method=swav"])
    assert pretrain(["--config", TINY, "model.method=swav", "data.shards=x"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_every_shipped_config_is_valid():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 2
    for c in configs:
        load_config(str(c), ["data.shards=x"])


@pytest.mark.parametrize("method", ["moco", "byol", "simsiam"])
def test_each_method_trains(real_ucf_shards, tmp_path, method):
    out = tmp_path / method
    assert run(real_ucf_shards, out, "train.max_steps=2", f"model.method={method}",
               "model.method_params={proj_dim: 16}") == 0
    assert set(losses(out)) == {1, 2}


def test_exported_torchvision_backbone_loads_into_torchvision():
    from train.model import CSTPModel
    from train.pretrain import export_backbone

    cfg = load_config(TINY, ["data.shards=x", "model.backbone=r3d_18", "model.width=1.0"])
    sd = export_backbone(CSTPModel(cfg), cfg)
    torchvision.models.video.r3d_18().load_state_dict(sd)


def test_two_torchrun_nodes_train_together(real_ucf_shards, tmp_path):
    port = free_port()
    out = tmp_path / "ddp"
    common = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              f"127.0.0.1:{port}", "--rdzv-id", "cstp-test"]
    script = ["train/pretrain.py", "--config", TINY, f"data.shards={real_ucf_shards}", "data.split=all", "data.batch_size=2",
              "train.tensorboard=false", "train.max_steps=3", "--out", str(out)]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    nodes = [subprocess.Popen([torchrun, *common, *script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [n.communicate(timeout=600) for n in nodes]
    for n, (o, e) in zip(nodes, results):
        assert n.returncode == 0, e[-3000:]
    ck = load_checkpoint(out / "ckpt-00000003.pt")
    assert ck["step"] == 3
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    # global batch semantics: 2 ranks x 2 clips, and the learning rate scaled for it
    assert json.loads((out / "log.jsonl").read_text().splitlines()[0])["clips_per_s"] > 0
