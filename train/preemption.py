"""Preemption: SIGTERM or SIGUSR1 ends a run after its current step, with a checkpoint at that step.

Schedulers stop jobs with SIGTERM (SLURM, Kubernetes); SLURM's ``--signal=USR1@90`` warns earlier.
The handler only records the signal; every rank checks the record at the end of each step and the
ranks agree (one tiny all-reduce) so all of them stop after the same step, where rank 0 writes the
checkpoint as at a periodic one. The process then exits with :data:`EXIT_PREEMPTED`, and ``--resume
auto`` continues at that step. DataLoader workers forked after the handler is installed inherit it,
so a signal sent to the whole process group does not kill them under the main process.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import torch

from . import ddp as D

# sysexits.h's EX_TEMPFAIL ("temporary failure; the user is invited to retry"): a requeue is in order
EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preemption:
    """The first stop signal this process received (its name), if any."""

    def __init__(self):
        self.signal: str | None = None

    def _handle(self, signum, frame) -> None:
        if self.signal is None:          # a second signal while saving changes nothing
            self.signal = signal.Signals(signum).name

    def agreed(self, device: torch.device) -> bool:
        """Whether any rank was signalled; every rank must call this at the same point of a step."""
        if not D.is_dist():
            return self.signal is not None
        return not D.all_ranks_true(torch.tensor(self.signal is None, device=device))


@contextlib.contextmanager
def watch() -> Iterator[Preemption]:
    """Record SIGTERM and SIGUSR1 while the block runs (the previous handlers come back after it)."""
    flag = Preemption()
    if threading.current_thread() is not threading.main_thread():    # signals reach the main thread only
        yield flag
        return
    old = {s: signal.signal(s, flag._handle) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
