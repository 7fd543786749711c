"""train/guard.py: the per-step non-finite check and how many bad steps a run may skip."""
from __future__ import annotations

import pytest
import torch

from shards.errors import RunFailed
from train.guard import BadStepGuard, bad_step_message, nonfinite_terms


def test_the_message_names_the_step_and_the_terms_that_are_not_finite():
    msg = bad_step_message(12, {"loss": float("nan"), "loss_rate": 0.7, "loss_rotation": float("inf"), "grad_norm": 3.0},
                           1, 0)
    assert msg.startswith("step 12: loss or gradient norm not finite (loss=nan, loss_rotation=inf)")
    assert "train.max_bad_steps=0" in msg and "\n" not in msg and "loss_rate" not in msg
    assert nonfinite_terms({"a": 1.0, "b": float("-inf")}) == ["b=-inf"]


def test_bad_steps_are_skipped_up_to_the_limit_with_buffers_restored():
    bn = torch.nn.BatchNorm1d(3)
    guard = BadStepGuard(bn, max_bad=2)
    ok = {"loss": torch.tensor(1.0), "grad_norm": torch.tensor(2.0)}
    bad = {"loss": torch.tensor(float("nan")), "grad_norm": torch.tensor(2.0)}
    for step in (1, 2):
        guard.snapshot()
        bn(torch.randn(4, 3) * 1e3)               # a step's forward moves the running statistics
        assert guard.check(step, bad) is False
        assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
    guard.snapshot()
    assert guard.check(3, ok) is True
    with pytest.raises(RunFailed, match=r"step 4: .*\(loss=nan\); stopping after 3 non-finite steps"):
        guard.check(4, bad)


def test_by_default_the_first_bad_step_stops_the_run():
    guard = BadStepGuard(torch.nn.Linear(2, 2), max_bad=0)
    guard.snapshot()
    with pytest.raises(RunFailed, match=r"step 1: .*grad_norm=inf.*after 1 non-finite step "):
        guard.check(1, {"loss": torch.tensor(0.5), "grad_norm": torch.tensor(float("inf"))})
