"""The one non-finite check per step: the loss terms and the gradient norm, agreed on by every rank.

A step whose loss or gradient norm is NaN or infinite never reaches the optimiser. Up to
``train.max_bad_steps`` such steps are skipped (the batch is consumed, the weights and batch-norm
statistics stay as they were); the next one stops the run with a RunFailed naming the step and the
terms that were not finite.
"""
from __future__ import annotations

import math

import torch

from shards.errors import RunFailed

from . import ddp as D


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value is finite on every rank (one device sync, one tiny all-reduce)."""
    ok = torch.isfinite(torch.stack([t.detach().float().reshape(()) for t in tensors])).all()
    return D.all_ranks_true(ok)


def nonfinite_terms(terms: dict[str, float]) -> list[str]:
    return [f"{k}={v:g}" for k, v in terms.items() if not math.isfinite(v)]


def bad_step_message(step: int, terms: dict[str, float], bad_steps: int, max_bad: int) -> str:
    named = nonfinite_terms(terms)
    what = ", ".join(named) if named else "finite on this rank, not on another"
    return (f"step {step}: loss or gradient norm not finite ({what}); stopping after {bad_steps} non-finite "
            f"step{'s' if bad_steps > 1 else ''} (train.max_bad_steps={max_bad}); the checkpoints written so far are "
            "kept; a lower optim.lr may help")


class BadStepGuard:
    """Counts non-finite steps; ``snapshot``/``restore`` keep the buffers (batch-norm statistics, queues)
    of a skipped step from being polluted, and cost nothing while no step may be skipped."""

    def __init__(self, model: torch.nn.Module, max_bad: int):
        self.model, self.max_bad, self.bad = model, int(max_bad), 0
        self._saved: list[torch.Tensor] = []

    def snapshot(self) -> None:
        if self.max_bad > 0:
            self._saved = [b.detach().clone() for b in self.model.buffers()]

    def check(self, step: int, terms: dict[str, torch.Tensor]) -> bool:
        """True: apply the step. False: skip it. Raises RunFailed once more than max_bad were bad."""
        if all_finite(list(terms.values())):
            return True
        self.bad += 1
        values = {k: float(v.detach().float()) for k, v in terms.items()}
        if self.bad > self.max_bad:
            raise D.agreed(RunFailed(bad_step_message(step, values, self.bad, self.max_bad)))
        with torch.no_grad():
            for b, s in zip(self.model.buffers(), self._saved):
                b.copy_(s)
        return False
