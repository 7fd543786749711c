"""Preemption (issue 20, item 1): SIGTERM or SIGUSR1 stops pretraining after the current step with a
checkpoint at that step, a `preempted` record and exit status 75; `--resume auto` then gives the losses
of an uninterrupted run. One process, and torchrun with two processes (the agent forwards the signal)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.train.test_pretrain import args, losses, records, torchrun
from train.checkpoint import list_checkpoints, load_checkpoint
from train.preemption import EXIT_PREEMPTED, watch
from train.run_folder import RUN_LOCK

STEPS = ["train.max_steps=10", "train.ckpt_every=100"]      # no periodic checkpoint: the signal's is the only one
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def launch(cmd, wait=True):
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def signal_when_logged(proc, out, step, sig, timeout=300):
    """Send ``sig`` to ``proc`` once its log.jsonl holds the record of step ``step``; its (status, out, err)."""
    deadline = time.monotonic() + timeout
    log = Path(out) / "log.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and re.search(rf'^\{{"step": {step},', log.read_text(), re.M):
            proc.send_signal(sig)
            o, e = proc.communicate(timeout=300)
            return proc.returncode, o, e
        time.sleep(0.01)
    raise AssertionError(f"the run ended (status {proc.poll()}) or stalled before logging step {step}")


def one_process(shards, out, *extra):
    return [sys.executable, "train/pretrain.py", *args(shards, out, *STEPS, *extra)]


def two_ranks(shards, out, *extra):
    # 11 videos, 2 ranks x 2: 2 steps an epoch, 3 epochs
    return torchrun("--nnodes", "1", "--nproc_per_node", "2", "--signals-to-handle",
                    "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "train/pretrain.py", *args(shards, out, *STEPS, "train.epochs=3", *extra))


def assert_preempted_then_resumed(whole, cut, resume, sig, total=10):
    events = [r for r in records(cut) if r.get("event") == "preempted"]
    assert len(events) == 1 and events[0]["signal"] == sig, events
    k = events[0]["step"]
    assert 2 <= k < total
    assert [p.name for p in list_checkpoints(cut)] == [f"ckpt-{k:08d}.pt"]     # written at the step it stopped
    assert max(losses(cut)) == k and not (Path(cut) / RUN_LOCK).exists()
    rc, o, e = launch(resume)
    assert rc == 0, e[-3000:]
    assert f"at step {k} " in o
    a, b = losses(whole), losses(cut)
    assert sorted(b) == list(range(1, total + 1)) and [r["step"] for r in records(cut) if "event" not in r] == sorted(b)
    for step in a:
        assert abs(b[step] - a[step]) <= 1e-6 * abs(a[step]), (step, a, b)


def test_sigterm_checkpoints_the_current_step_and_resume_gives_the_uninterrupted_losses(real_ucf_shards, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    rc, _, e = launch(one_process(real_ucf_shards, whole))
    assert rc == 0, e[-3000:]
    rc, o, e = signal_when_logged(launch(one_process(real_ucf_shards, cut), wait=False), cut, 2, signal.SIGTERM)
    assert rc == EXIT_PREEMPTED, e[-3000:]
    assert re.search(r"^preempted by SIGTERM after step \d+ of 10: \S+ckpt-\d{8}\.pt written; continue with "
                     r"--resume auto \(exit 75\)$", o, re.M), o
    assert "Traceback" not in e
    assert_preempted_then_resumed(whole, cut, one_process(real_ucf_shards, cut, "--resume", "auto"), "SIGTERM")


def test_sigusr1_to_torchrun_preempts_both_ranks_at_one_step(real_ucf_shards, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    rc, _, e = launch(two_ranks(real_ucf_shards, whole))
    assert rc == 0, e[-3000:]
    rc, o, e = signal_when_logged(launch(two_ranks(real_ucf_shards, cut), wait=False), cut, 2, signal.SIGUSR1)
    # the workers exit 75; torchrun, signalled itself, exits 1 after its own SignalException traceback
    assert rc == 1 and "SignalException" in e, e[-3000:]
    assert o.count("preempted by SIGUSR1") == 1      # rank 0 says it, once
    alone = tmp_path / "alone"
    shutil.copytree(cut, alone)
    assert_preempted_then_resumed(whole, cut, two_ranks(real_ucf_shards, cut, "--resume", "auto"), "SIGUSR1", total=6)
    # the same run resumed on one process: the global batch (and so the lr and the step count) is kept
    rc, o, e = launch([sys.executable, "train/pretrain.py", "--out", str(alone), "--resume", "auto"])
    assert rc == 0, e[-3000:]
    assert "pretrain: world size 2 -> 1: data.batch_size 2 -> 4 per rank keeps the global batch 4 and the " \
           "learning rate;" in e
    assert "2 steps per epoch, 6 in total" in o and "world size 1, global batch 4 (1 x 4)" in o
    assert sorted(losses(alone)) == list(range(1, 7))
    assert load_checkpoint(alone / "ckpt-00000006.pt")["loader"]["world_size"] == 1


def test_the_handler_records_the_first_signal_and_is_removed_after_the_run():
    before = signal.getsignal(signal.SIGTERM)
    with watch() as flag:
        assert flag.signal is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)        # handlers run between bytecodes of the main thread
        assert flag.signal == "SIGUSR1"
    assert signal.getsignal(signal.SIGTERM) == before
