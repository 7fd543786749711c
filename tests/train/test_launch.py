"""The launcher (train/launch.py, eval/ft_launch.py): a mistake found before the workers start is one
line and exit 2 at any process count; a worker's own InputError is still one line and exit 2, said
once; two workers train 2 steps; SIGTERM to the launcher reaches the workers."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from eval.ft_plan import plan
from eval.ft_config import FinetuneConfig
from eval.ft_launch import main as finetune
from shards.errors import InputError
from tests.conftest import ROOT
from tests.train.test_pretrain import TINY
from train.launch import failed_status, main as launch

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def base(shards, out, *extra):
    return ["--config", TINY, f"data.shards={shards}", "train.tensorboard=false", "--out", str(out), *extra]


def launcher(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "train.launch", *argv], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@contextlib.contextmanager
def reaped(workers):
    """Workers the launcher failed to stop are killed after the test (they would hold its pipes open)."""
    try:
        yield
    finally:
        for w in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                w.kill()


@pytest.mark.parametrize("nproc", ["1", "2"])
@pytest.mark.parametrize("extra,msg", [
    (["train.lr=0.1"], "pretrain: unknown config key 'train.lr'"),
    # split 1 of the real clips has 2 train videos: fewer than one global batch of 4 (tiny_cpu's) x ranks
    (["data.split=1"], "pretrain: {shards}: data.split=1 (2 train, 9 test usable videos; training takes the train "
                       "part): 2 usable videos are fewer than one global batch of {batch}"),
])
def test_a_mistake_found_before_the_workers_start_is_one_line_and_exit_2(real_ucf_shards, tmp_path, capfd,
                                                                          nproc, extra, msg):
    out = tmp_path / "run"
    assert launch(["--nproc-per-node", nproc, *base(real_ucf_shards, out, *extra)]) == 2
    o, e = capfd.readouterr()
    assert o == "" and len(e.splitlines()) == 1, e
    assert e.startswith(msg.format(shards=real_ucf_shards, batch=4 * int(nproc))), e
    assert not out.exists()                   # no worker ran: nothing was made


def test_launcher_options_need_nproc_and_a_rendezvous_for_several_nodes(tmp_path, capfd):
    assert launch(["--nnodes", "2", "--config", TINY]) == 2
    assert launch(["--nproc-per-node", "2", "--nnodes", "2", "--config", TINY]) == 2
    assert launch(["--nproc-per-node", "2", "--nnodes", "3:2", "--config", TINY]) == 2
    assert capfd.readouterr().err.splitlines() == [
        "pretrain: --nnodes and --rdzv-endpoint start workers: give --nproc-per-node too",
        "pretrain: --nnodes 2: more than one node needs --rdzv-endpoint HOST:PORT (the same on every node)",
        "pretrain: --nnodes 3:2: the minimum is above the maximum"]


def test_help_names_the_launcher_options_and_the_commands(capsys):
    assert launch(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ") and "--nproc-per-node N" in text and "--resume" in text
    assert "(default: )" not in text and "default: None" not in text.split("launcher (")[1]


def test_two_workers_train_and_a_workers_input_error_is_said_once(real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    argv = ["--nproc-per-node", "2",
            *base(real_ucf_shards, out, "data.split=all", "data.batch_size=2", "train.max_steps=2")]
    o, e = launcher(*argv).communicate(timeout=600)
    assert (out / "ckpt-00000002.pt").is_file(), e[-3000:]
    assert o.count("world size 2, global batch 4 (2 x 2)") == 1 and "done: 2 steps" in o
    # the run folder check is the workers' (the parent does not look at run folders)
    p = launcher(*argv)
    o, e = p.communicate(timeout=600)
    assert p.returncode == 2
    lines = [l for l in e.splitlines() if "%|" not in l]
    assert lines == [f"pretrain: {out} already holds checkpoints (newest ckpt-00000002.pt); pass --resume auto "
                     "to continue that run, another --out for a new one, or --overwrite to replace it"], e


def test_sigterm_to_the_launcher_reaches_the_workers(real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    p = launcher("--nproc-per-node", "2", *base(real_ucf_shards, out, "data.split=all", "data.batch_size=2",
                                                "train.epochs=50"))
    deadline = time.time() + 300
    while not (out / "log.jsonl").is_file() or '"step": 1,' not in (out / "log.jsonl").read_text():
        assert p.poll() is None and time.time() < deadline, p.communicate()[1][-3000:]
        time.sleep(0.5)
    workers = psutil.Process(p.pid).children()
    assert len(workers) == 2
    with reaped(workers):
        p.send_signal(signal.SIGTERM)
        _, e = p.communicate(timeout=120)
    # the workers' status comes through: killed by SIGTERM (143), or preempted with a checkpoint (75)
    assert p.returncode in (143, 75), e[-3000:]
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_reaches_the_workers_and_their_exit_status_comes_back(sig):
    code = ("import sys; from train.launch import Target, run; sys.exit(run(Target('worker', "
            "'tests.train.launch_worker', parser=None, check=lambda argv, world: None), sys.argv[1:]))")
    p = subprocess.Popen([sys.executable, "-c", code, "--nproc-per-node", "2", "75"], cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert [p.stdout.readline() for _ in range(2)] == ["ready\n"] * 2
    with reaped(psutil.Process(p.pid).children()):
        p.send_signal(sig)
        o, e = p.communicate(timeout=120)
    assert p.returncode == 75 and e == "", e      # the workers' status, and no report of the launcher's own


def test_the_status_is_the_worker_that_failed_first_not_the_ones_stopped_after_it(capsys):
    f = lambda code: SimpleNamespace(exitcode=code)
    assert failed_status("pretrain", {0: f(-15), 1: f(2)}) == 2
    assert failed_status("pretrain", {0: f(75), 1: f(75)}) == 75
    assert capsys.readouterr().err == ""                 # those workers said why themselves
    assert failed_status("pretrain", {0: f(-9), 1: f(-15)}) == 137
    assert failed_status("pretrain", {0: f(-15), 1: f(3)}) == 3
    assert capsys.readouterr().err.splitlines() == ["pretrain: rank 0 was killed by signal SIGKILL",
                                                    "pretrain: rank 1 failed with exit status 3 (its output is above)"]


def test_finetune_too_few_videos_for_the_ranks_names_fewer_ranks(real_ucf_shards, tmp_path, capfd):
    argv = ["--nproc-per-node", "2", "--ckpt", "none", "--width", "0.125", "--shards", str(real_ucf_shards),
            "--out", str(tmp_path), "--batch-size", "2", "--val-fraction", "0.5", "--clip-len", "8", "--crop", "64"]
    assert finetune(argv) == 2
    e = capfd.readouterr().err
    assert e.splitlines() == ["finetune.py: split 1: 1 train video (after 1 held out) cannot fill one batch of "
                              "finetune.optim.batch_size=2; even one clip a rank needs 2 of them: run on 1 rank "
                              "or fewer"], e


def batch_of(n: int) -> FinetuneConfig:
    cfg = FinetuneConfig()
    cfg.optim.batch_size = n
    return cfg


def test_the_fine_tune_plan_names_the_change_that_gives_one_step():
    assert plan(9, 1, batch_of(4), 2, "1") == (2, 2)       # 4 clips a step over 2 ranks: 2 each, 2 steps
    for n, batch, world, fix in [(5, 8, 2, "use --batch-size 4 or less"), (3, 4, 4, "run on 3 ranks or fewer"),
                                 (0, 2, 1, "choose a split with train videos or lower eval.val_fraction")]:
        with pytest.raises(InputError, match=fix):
            plan(n, 0, batch_of(batch), world, "1")
