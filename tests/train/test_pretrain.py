"""train/pretrain.py end to end on shards of the real clips: one process, a killed run resumed, the
failures that must not lose work, the log, and torchrun on 127.0.0.1."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.servers import free_port
from train.checkpoint import KEYS, list_checkpoints, load_checkpoint, nonfinite_tensors
from train.config import ConfigError, load_config, to_dict
from train.pretrain import main as pretrain
from train.run_start import split_phrase

TINY = str(ROOT / "configs" / "tiny_cpu.yaml")
BIN = Path(sys.executable).parent


def args(shards, out, *extra):
    return ["--config", TINY, f"data.shards={shards}", "data.split=all", "data.batch_size=2", "train.tensorboard=false",
            "--out", str(out), *extra]


def run(shards, out, *extra):
    return pretrain(args(shards, out, *extra))


def records(out):
    return [json.loads(l) for l in (Path(out) / "log.jsonl").read_text().splitlines()]


def losses(out):
    return {r["step"]: r["loss"] for r in records(out) if "event" not in r}


def test_a_run_logs_every_term_and_writes_the_checkpoint_contract(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=6", "train.ckpt_every=3") == 0
    stdout = capsys.readouterr().out
    assert "training on every video of the shard set (data.split=all" in stdout
    assert "11 videos, 10 pairs per epoch; 5 steps per epoch, 6 in total; world size 1, global batch 2" in stdout
    assert re.search(r"done: 6 steps; steady state \(5 steps, first 1 excluded\): [\d.]+ clips/s, data wait \d+%", stdout)
    recs = records(out)
    steps = [r for r in recs if "event" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for k in ("loss_contrastive", "loss_rate", "loss_rotation", "loss_overlap_spatial", "loss_overlap_temporal",
              "grad_norm", "acc_rate", "acc_rotation", "acc_overlap_spatial", "acc_overlap_temporal", "lr",
              "clips_per_s", "data_wait", "time"):
        assert k in steps[0]
    assert all(0 <= r["data_wait"] <= 1 and r["clips_per_s"] > 0 for r in steps)
    events = {r["event"]: r for r in recs if "event" in r}
    assert list(events) == ["start", "epoch", "end"]
    assert events["epoch"]["step"] == 5 and events["epoch"]["videos_in_split"] == 11
    assert events["end"]["steps_excluded"] == 1 and events["end"]["steady_clips_per_s"] > 0
    ck = load_checkpoint(out / "ckpt-00000006.pt")
    assert tuple(ck) == KEYS and ck["step"] == 6 and ck["config"]["model"]["backbone"] == "r21d_10"
    assert to_dict(load_config(str(out / "config.yaml"), [])) == ck["config"]
    assert (out / "backbone.pt").is_file()
    assert not list(out.glob(".*tmp*"))


def test_records_are_written_every_log_every_steps(real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=5", "train.log_every=2") == 0
    assert sorted(losses(out)) == [2, 4, 5]


def test_the_start_summary_says_which_videos_it_trains_on():
    assert split_phrase("1") == "the train part of split 1 (data.split=1; data.split=all trains on every video)"
    assert split_phrase("all").startswith("every video of the shard set (data.split=all;")


def run_process(shards, out, *extra, wait=True):
    """pretrain.py as its own process, as users run it (and with the same numerics each time)."""
    cmd = [sys.executable, "train/pretrain.py", *args(shards, out, *extra)]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when_logged(proc, out, step, timeout=300):
    """SIGKILL ``proc`` as soon as its log.jsonl holds step ``step``: a crash with no clean-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        path = Path(out) / "log.jsonl"
        text = path.read_text() if path.is_file() else ""
        if re.search(rf'^\{{"step": {step},', text, re.M):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    raise AssertionError(f"the run ended (status {proc.poll()}) or stalled before logging step {step}")


def tb_steps(folder, tag="loss"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_a_killed_run_resumes_with_the_uninterrupted_losses_and_each_step_logged_once(real_ucf_shards, tmp_path):
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    steps = ["train.max_steps=8", "train.ckpt_every=3"]
    r = run_process(real_ucf_shards, whole, *steps)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stderr, r.stderr[-3000:]
    kill_when_logged(run_process(real_ucf_shards, crashed, *steps, "train.tensorboard=true", wait=False), crashed, 4)
    assert [p.name for p in list_checkpoints(crashed)] == ["ckpt-00000003.pt"]
    assert 4 in losses(crashed)
    leftover = crashed / ".ckpt-00000006.pt.tmp-0123abcd"      # what a save killed before its rename leaves
    leftover.write_bytes(b"half a checkpoint")
    r = run_process(real_ucf_shards, crashed, *steps, "train.tensorboard=true", "--resume", "auto")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ckpt-00000003.pt at step 3 (epoch 0, batch 3)" in r.stdout
    assert not leftover.exists() and f"removed {leftover.name}" in r.stderr
    a, b = losses(whole), losses(crashed)
    assert [x["step"] for x in records(crashed) if "event" not in x] == list(range(1, 9))
    for step in range(1, 9):
        assert b[step] == pytest.approx(a[step], rel=1e-6), (step, a, b)
    assert tb_steps(crashed / "tb") == list(range(1, 9))


def test_launching_again_into_a_run_folder_is_refused(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=2") == 0
    capsys.readouterr()
    assert run(real_ucf_shards, out, "train.max_steps=2") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"pretrain: {out} already holds checkpoints (newest ckpt-00000002.pt)")
    assert "--resume auto" in err and "--out" in err
    assert run(real_ucf_shards, out, "train.max_steps=1", "--overwrite") == 0
    assert [r["event"] for r in records(out) if "event" in r].count("start") == 1
    assert sorted(losses(out)) == [1] and [p.name for p in list_checkpoints(out)] == ["ckpt-00000001.pt"]


def test_an_empty_newest_checkpoint_is_skipped_by_resume_auto(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=2", "train.ckpt_every=1") == 0
    (out / "ckpt-00000002.pt").write_bytes(b"")
    capsys.readouterr()
    assert run(real_ucf_shards, out, "train.max_steps=2", "train.ckpt_every=1", "--resume", "auto") == 0
    io = capsys.readouterr()
    assert re.search(r"pretrain: warning: skipping unusable checkpoint: \S+ckpt-00000002.pt: empty file", io.err)
    assert "ckpt-00000001.pt at step 1" in io.out
    assert [r["step"] for r in records(out) if "event" not in r] == [1, 2]
    assert load_checkpoint(out / "ckpt-00000002.pt")["step"] == 2


def _failure(err):
    m = re.search(r"^pretrain: step (\d+): loss or gradient norm not finite \(([^)]*)\); stopping after (\d+)", err, re.M)
    assert m, err[-2000:]
    assert re.search(r"=(nan|inf)", m[2])
    return int(m[1]), int(m[3])


def assert_checkpoints_finite(out):
    for p in list_checkpoints(out):
        assert nonfinite_tensors(load_checkpoint(p)["model"]) == [], p


def test_a_non_finite_loss_stops_the_run_and_keeps_the_good_checkpoints(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=10", "train.ckpt_every=1", "train.keep_ckpts=2",
               "optim.lr=1.0e+30") == 1
    bad, count = _failure(capsys.readouterr().err)
    assert count == 1
    kept = list_checkpoints(out)
    assert [p.name for p in kept] == [f"ckpt-{s:08d}.pt" for s in range(max(1, bad - 2), bad)]
    assert_checkpoints_finite(out)
    assert not (out / "backbone.pt").exists()
    assert max(losses(out)) == bad - 1


def test_max_bad_steps_skips_that_many_non_finite_steps(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=10", "train.ckpt_every=1", "optim.lr=1.0e+30",
               "train.max_bad_steps=1") == 1
    bad, count = _failure(capsys.readouterr().err)
    assert count == 2
    skipped = [r for r in records(out) if r.get("event") == "bad_step"]
    assert len(skipped) == 1 and skipped[0]["step"] < bad and skipped[0]["nonfinite"]
    assert_checkpoints_finite(out)


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


@pytest.mark.parametrize("how", [[sys.executable, "train/pretrain.py"], [str(BIN / "cstp-pretrain")]])
def test_help_shows_every_default_by_path_and_console_script(how):
    r = subprocess.run([*how, "--help"], cwd=ROOT, capture_output=True, text=True)
    # the usage line names the command as typed (tests/test_cli.py checks every entry point)
    assert r.returncode == 0 and r.stdout.startswith("usage: cstp-pretrain" if "cstp-" in how[-1] else "usage: pretrain")
    words = " ".join(r.stdout.split())         # argparse wraps help text at any space
    assert "(default: none)" in words and "--overwrite" in words and "exit-after-step" not in words


def torchrun(*extra):
    return [str(BIN / "torchrun"), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *extra]


def test_torchrun_bad_input_fails_fast_with_one_line_from_rank_0(tmp_path):
    cmd = torchrun("--nnodes", "1", "--nproc_per_node", "2", "train/pretrain.py", "--config", TINY,
                   "data.shards=x", "model.method=swav", "--out", str(tmp_path / "run"))
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    assert r.stderr.count("unknown method 'swav'") == 1, r.stderr
    assert 'pretrain.py", line' not in r.stderr        # the ranks exit with their status; no traceback of theirs
    assert "exitcode  : 2" in r.stderr                  # torchrun's own report of it


def test_two_torchrun_nodes_train_together(real_ucf_shards, tmp_path):
    out = tmp_path / "ddp"
    port = free_port()
    common = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              f"127.0.0.1:{port}", "--rdzv-id", "cstp-test"]
    script = ["train/pretrain.py", *args(real_ucf_shards, out, "train.max_steps=3")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([str(BIN / "torchrun"), *common, *script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [n.communicate(timeout=600) for n in nodes]
    for n, (o, e) in zip(nodes, results):
        assert n.returncode == 0, e[-3000:]
        assert "Warning" not in e, e[-3000:]
    assert sum(o.count("world size 2, global batch 4 (2 x 2)") for o, _ in results) == 1   # rank 0 only
    ck = load_checkpoint(out / "ckpt-00000003.pt")
    assert ck["step"] == 3
    assert sorted(losses(out)) == [1, 2, 3]
    assert records(out)[1]["clips_per_s"] > 0
    # the epoch record counts both ranks' videos: 11 videos, 2 ranks x batch 2 -> 2 steps, 8 videos
    epochs = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "epoch"]
    assert (epochs[0]["videos_delivered"], epochs[0]["videos_in_split"]) == (8, 11)


def test_a_run_through_a_loader_worker_trains_on_the_same_batches(real_ucf_shards, tmp_path):
    """With a worker the loop gets the worker's shared-memory batches themselves (lent, no copy);
    over an epoch boundary its losses equal those of the in-process loader's batches."""
    steps = ("train.max_steps=7",)
    assert run(real_ucf_shards, tmp_path / "w0", *steps) == 0
    assert run(real_ucf_shards, tmp_path / "w1", *steps, "data.num_workers=1") == 0
    assert losses(tmp_path / "w1") == losses(tmp_path / "w0") and len(losses(tmp_path / "w0")) == 7
