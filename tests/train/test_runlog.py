"""train/runlog.py: records every log_every steps with window means, event records, the truncation
a resume does, and the steady-state figures with the first 10% of steps left out."""
from __future__ import annotations

import json

import pytest
import torch

from train.runlog import LOG, RunLog, steady_state, truncate_log


def records(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_records_every_log_every_steps_hold_the_window_means(tmp_path):
    log = RunLog(tmp_path, start_step=0, log_every=2, clips_per_step=8, tensorboard=False, enabled=True)
    log.event("start", 0, summary="x")
    for step in range(1, 6):
        log.add_step(step, 0, {"loss": torch.tensor(float(step))}, 0.1, duration=0.5, wait=0.1, last=step == 5)
    log.close()
    recs = records(tmp_path / LOG)
    assert recs[0]["event"] == "start"
    steps = [r for r in recs if "event" not in r]
    assert [r["step"] for r in steps] == [2, 4, 5]
    assert [r["loss"] for r in steps] == [1.5, 3.5, 5.0]
    assert steps[0]["clips_per_s"] == pytest.approx(16.0) and steps[0]["data_wait"] == pytest.approx(0.2)
    assert all(r["time"] > 1e9 for r in recs)


def test_other_ranks_write_nothing(tmp_path):
    log = RunLog(tmp_path, start_step=0, log_every=1, clips_per_step=8, tensorboard=True, enabled=False)
    assert log.add_step(1, 0, {"loss": torch.tensor(1.0)}, 0.1, 0.5, 0.1) is None
    log.event("start", 0)
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_a_resume_drops_the_records_past_its_checkpoint_and_a_torn_line(tmp_path):
    path = tmp_path / LOG
    lines = [{"event": "start", "step": 0}, *({"step": s, "loss": 1.0} for s in range(1, 6)), {"event": "epoch", "step": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 6, "lo')
    assert truncate_log(path, 3) == 3          # steps 4 and 5 and the torn line
    assert [(r.get("event"), r["step"]) for r in records(path)] == [("start", 0), (None, 1), (None, 2), (None, 3),
                                                                   ("epoch", 3)]


def test_steady_state_leaves_out_the_first_tenth_of_the_steps():
    durations = [5.0] + [0.5] * 19           # the first steps pay for start-up
    waits = [4.0] + [0.1] * 19
    s = steady_state(durations, waits, clips_per_step=4)
    assert s["steps_excluded"] == 2 and s["steps_measured"] == 18
    assert s["steady_clips_per_s"] == pytest.approx(8.0) and s["steady_data_wait"] == pytest.approx(0.2)
    assert steady_state([1.0], [0.5], 4)["steps_excluded"] == 0
