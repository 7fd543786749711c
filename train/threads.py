"""Intra-op threads that fit the machine, for every process that runs a model (pretraining,
fine-tuning, the probes, the benches).

torch starts as many intra-op threads as the machine has cores, whatever else runs there: beside
its own loader workers, other ranks on the node or another job, its threads wait on each other
(measured: one CPU process with one other core busy trained at 0.49x the speed of one thread).
A process takes its share instead: the cores it may run on (its CPU affinity, which a scheduler's
cgroup or ``taskset`` narrows), divided by the processes of its node, less its loader workers, at
least 1. ``OMP_NUM_THREADS``, when set, wins.
"""
from __future__ import annotations

import os
from typing import Mapping

from shards.errors import InputError


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:           # no affinity on this platform
        return os.cpu_count() or 1


def intra_op_threads(workers: int = 0, cores: int | None = None, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(threads, where the number comes from): ``cores`` (default: usable_cores()) / the node's
    processes (torchrun's LOCAL_WORLD_SIZE, else 1), less ``workers``, at least 1; OMP_NUM_THREADS wins."""
    env = os.environ if env is None else env
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        if not omp.isdigit() or int(omp) < 1:
            raise InputError(f"OMP_NUM_THREADS={omp!r}: not a positive whole number (unset it to have the "
                             f"threads chosen from the cores)")
        return int(omp), "OMP_NUM_THREADS"
    cores = usable_cores() if cores is None else cores
    local = max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = max(1, cores // local - workers)
    return n, f"{cores} cores / {local} processes - {workers} loader workers"


def set_threads(workers: int = 0) -> str:
    """Set this process's intra-op threads (intra_op_threads) and say so, e.g. for a start summary."""
    import torch

    n, why = intra_op_threads(workers)
    torch.set_num_threads(n)
    return f"{n} intra-op thread{'s' if n != 1 else ''} ({why})"
