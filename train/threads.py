"""Intra-op threads that fit the machine, for every process that runs a model (pretraining,
fine-tuning, the probes, the benches).

torch starts as many intra-op threads as the machine has cores, whatever else runs there: beside
its own loader workers, other ranks on the node or another job, its threads wait on each other
(measured: one CPU process with one other core busy trained at 0.49x the speed of one thread).
A process takes its share instead: the cores it may run on (its CPU affinity, which a scheduler's
cgroup or ``taskset`` narrows), divided by the processes of its node, less its loader workers, at
least 1. ``OMP_NUM_THREADS``, when set, wins.

Threads that wait sleep (``OMP_WAIT_POLICY=PASSIVE``, set by ``passive_wait`` unless the environment
sets it). torch's OpenMP runtime (GNU libgomp here) otherwise has a thread that ran out of work
spin up to GOMP_SPINCOUNT=300,000 rounds before it sleeps, at every parallel region's end and between
regions; libgomp shortens the spin only when it has more threads than its own cores, blind to other
processes. With one core taken by another process, the spinning thread holds a core that its
sibling (still working) or the Python thread needs, and each of a step's many parallel regions
waits on the scheduler (bench/threads.py; figures in the README's "Benchmarks"). libgomp reads the
variable once, when torch loads it, so it must be set before the first ``import torch``:
``train/__init__.py`` and ``eval/__init__.py`` call ``passive_wait``, which covers every console
script and every entry point that imports a project module before torch.
"""
from __future__ import annotations

import os
from typing import Mapping, MutableMapping

from shards.errors import InputError


def passive_wait(env: MutableMapping[str, str] | None = None) -> None:
    """Have OpenMP threads that wait sleep instead of spinning, unless the environment says otherwise
    (OMP_WAIT_POLICY; libgomp's GOMP_SPINCOUNT, when set, still overrides the spin). Takes effect only
    if called before torch is first imported in this process; child processes inherit it."""
    env = os.environ if env is None else env
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:           # no affinity on this platform
        return os.cpu_count() or 1


def intra_op_threads(workers: int = 0, cores: int | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[int, str]:
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
