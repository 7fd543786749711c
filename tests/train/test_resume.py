"""One run per run folder (issue 20, item 2) and a resume that continues the run it resumes (item 3)."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.train.test_pretrain import args, losses, records, run
from train.checkpoint import load_backbone, load_checkpoint
from train.config import load_config, to_dict
from train.preemption import EXIT_PREEMPTED
from train.resume import ResumeRefused, per_rank_batch
from train.pretrain import main as pretrain
from train.run_folder import RUN_LOCK


def one_line_err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


# item 2: one run per run folder ------------------------------------------------------------------

def test_a_second_run_into_a_held_folder_is_refused_at_once_and_eval_reads_it(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    cmd = [sys.executable, "train/pretrain.py", *args(real_ucf_shards, out, "train.max_steps=10", "train.ckpt_every=1")]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "ckpt-00000001.pt").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended or stalled"
            time.sleep(0.02)
        held = (out / RUN_LOCK).read_text()
        t0 = time.perf_counter()
        assert run(real_ucf_shards, out, "train.max_steps=10", "--resume", "auto") == 2
        took = time.perf_counter() - t0
        err = one_line_err(capsys)
        assert f"another training run is writing to {out}" in err and RUN_LOCK in err
        assert f"pid {first.pid} on host {socket.gethostname()}" in err and took < 10
        # evaluation reads a checkpoint of the running run without taking (or touching) its lock
        _, what = load_backbone(str(out / "ckpt-00000001.pt"))
        assert "step 1" in what and (out / RUN_LOCK).read_text() == held
    finally:
        first.send_signal(signal.SIGTERM)     # preempted: it stops after its step, with a checkpoint
        status = first.wait(timeout=300)
    assert status == EXIT_PREEMPTED and not (out / RUN_LOCK).exists()
    assert [r["event"] for r in records(out) if "event" in r].count("start") == 1     # the refused start wrote nothing


def test_a_dead_holders_lock_is_taken_over_with_a_warning(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / RUN_LOCK).write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert run(real_ucf_shards, out, "train.max_steps=1") == 0
    assert f"pretrain: warning: taking over the stale lock {out / RUN_LOCK} of pid {dead.pid}" in capsys.readouterr().err
    assert not (out / RUN_LOCK).exists()


def test_a_refused_start_leaves_no_run_folder(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "new"
    assert run(real_ucf_shards, out, "data.batch_size=100") == 2      # 11 videos: fewer than one batch
    assert "fewer than one global batch" in one_line_err(capsys)
    assert not out.exists()


# item 3: a resume continues the run it resumes ------------------------------------------------------

@pytest.fixture
def two_steps(real_ucf_shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=2", "train.ckpt_every=1") == 0
    capsys.readouterr()
    return out


def test_overrides_that_change_the_run_are_refused_naming_each_key(real_ucf_shards, two_steps, capsys):
    ck = load_checkpoint(two_steps / "ckpt-00000002.pt")
    assert run(real_ucf_shards, two_steps, "train.max_steps=4", "optim.lr=0.1", "data.rates=[1, 3]",
               "--resume", "auto") == 2
    err = one_line_err(capsys)
    assert "the command line changes data.rates [1, 2] -> [1, 3], optim.lr 0.5 -> 0.1:" in err
    assert "--allow-change KEY" in err and "train.max_steps" not in err.split(":")[1]
    # nothing was written: the same checkpoints, log and config
    assert max(losses(two_steps)) == 2 and to_dict(load_config(str(two_steps / "config.yaml"), [])) == ck["config"]


def test_the_model_never_changes_on_resume_in_one_line(real_ucf_shards, two_steps, capsys):
    assert run(real_ucf_shards, two_steps, "model.width=0.25", "--resume", "auto") == 2
    assert "changes model.width 0.125 -> 0.25:" in one_line_err(capsys)
    assert run(real_ucf_shards, two_steps, "model.width=0.25", "--allow-change", "model.width", "--resume", "auto") == 2
    assert one_line_err(capsys).startswith("pretrain: model.width 0.125 -> 0.25 cannot change on resume")
    # a head switched off: the weights do not fit, said in one line naming the change
    assert run(real_ucf_shards, two_steps, "loss.rate=0", "train.max_steps=3", "--allow-change", "loss.rate",
               "--resume", "auto") == 2
    err = one_line_err(capsys)
    assert "ckpt-00000002.pt: its model does not fit the changed config (" in err and "loss.rate 1.0 -> 0.0" in err
    assert "Unexpected key(s) in state_dict: \"heads.rate." in err


def test_allowed_changes_take_effect_and_are_recorded(real_ucf_shards, two_steps, tmp_path, capsys):
    same = tmp_path / "same"
    shutil.copytree(two_steps, same)
    original = (two_steps / "config.yaml").read_text()
    assert run(real_ucf_shards, same, "train.max_steps=3", "train.ckpt_every=1", "--resume", "auto") == 0
    assert run(real_ucf_shards, two_steps, "train.max_steps=3", "train.ckpt_every=1", "optim.lr=0.1", "--allow-change", "optim.lr",
               "--resume", "auto") == 0
    out = capsys.readouterr().out
    assert "changed: optim.lr 0.5 -> 0.1, train.max_steps 2 -> 3" in out
    a, b = records(same), records(two_steps)
    step3 = [next(r for r in recs if r.get("step") == 3 and "event" not in r) for recs in (a, b)]
    assert step3[1]["loss"] == pytest.approx(step3[0]["loss"], rel=1e-6)     # the same weights before step 3
    assert step3[1]["lr"] == pytest.approx(step3[0]["lr"] * 0.1 / 0.5, rel=1e-9)    # the new lr applies at once
    resume = [r for r in b if r.get("event") == "resume"]
    assert resume[0]["changes"] == {"optim.lr": [0.5, 0.1], "train.max_steps": [2, 3]}
    text = (two_steps / "config.yaml").read_text()
    assert text.startswith(original)        # the original config, then a line for the resume
    assert text[len(original):].startswith("# resumed ") and text.endswith(
        "at step 2 from ckpt-00000002.pt: optim.lr 0.5 -> 0.1, train.max_steps 2 -> 3\n")
    assert load_checkpoint(two_steps / "ckpt-00000003.pt")["config"]["optim"]["lr"] == 0.1
    # a bare --resume auto after the run's end says so, and trains nothing
    capsys.readouterr()
    assert pretrain(["--out", str(two_steps), "--resume", "auto"]) == 0
    assert "nothing to train: the run finished at step 3 (train.epochs=2, train.max_steps=3; ckpt-00000003.pt)" in \
        capsys.readouterr().out
    assert records(two_steps) == b


def test_a_global_batch_that_does_not_divide_over_the_new_ranks_is_refused_naming_the_numbers():
    cfg = {"data": {"batch_size": 2}}
    assert per_rank_batch(cfg, 2, 2, "c") == (2, None)
    batch, note = per_rank_batch(cfg, 2, 1, "c")
    assert batch == 4 and note.startswith("world size 2 -> 1: data.batch_size 2 -> 4 per rank keeps the global batch 4")
    assert per_rank_batch(cfg, 3, 2, "c")[0] == 3
    with pytest.raises(ResumeRefused, match=r"c was trained at world size 2 with a global batch of 4 \(data.batch_size "
                                            r"2 x 2\), which does not divide over 3 ranks; resume on a world size in "
                                            r"\[1, 2, 4\]"):
        per_rank_batch(cfg, 2, 3, "c")
