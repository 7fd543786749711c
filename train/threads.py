"""Intra-op threads that fit the machine, for every process that runs a model (pretraining,
fine-tuning, the probes, the benches).

torch starts as many intra-op threads as the machine has cores, whatever else runs there: beside
its own loader workers, other ranks on the node or another job, its threads wait on each other
(measured: one CPU process with one other core busy trained at 0.49x the speed of one thread).
A process takes its share instead: the cores it may run on (its CPU affinity, which a scheduler's
cgroup or ``taskset`` narrows), divided by the processes of its node, and no more than those of them
that other work has not kept busy over the last 0.1 s (read from /proc/stat as the process starts),
less its loader workers, at least 1. ``OMP_NUM_THREADS``, when set, wins: set it where a run must use
the same count whatever else the machine is doing (float sums can differ with the thread count).

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
import time
from typing import Iterable, Mapping, MutableMapping

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


def _per_cpu(stat: str) -> dict[int, tuple[int, int]]:
    """{cpu: (idle jiffies, all jiffies)} from /proc/stat's text (its ``cpuN`` lines; iowait counts as
    idle, and guest time is already inside user time)."""
    out = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            t = [int(f) for f in fields[:8]]
            out[int(name[3:])] = (t[3] + t[4], sum(t))
    return out


def busy_between(before: str, after: str, cpus: Iterable[int]) -> float:
    """Busy cores among ``cpus`` between two readings of /proc/stat: the sum of each core's busy fraction."""
    a, b = _per_cpu(before), _per_cpu(after)
    busy = 0.0
    for c in cpus:
        if c in a and c in b and b[c][1] > a[c][1]:
            busy += 1 - (b[c][0] - a[c][0]) / (b[c][1] - a[c][1])
    return busy


def busy_cores(interval: float = 0.1, stat: str = "/proc/stat") -> float:
    """Cores this process may use that other work keeps busy, measured over ``interval`` seconds while
    this process sleeps; 0.0 where /proc/stat cannot be read (not Linux)."""
    try:
        cpus = os.sched_getaffinity(0)
        with open(stat) as f:
            before = f.read()
        time.sleep(interval)
        with open(stat) as f:
            after = f.read()
    except (AttributeError, OSError):
        return 0.0
    return busy_between(before, after, cpus)


def intra_op_threads(workers: int = 0, cores: int | None = None,
                     env: Mapping[str, str] | None = None, busy: float = 0.0) -> tuple[int, str]:
    """(threads, where the number comes from): ``cores`` (default: usable_cores()) / the node's
    processes (torchrun's LOCAL_WORLD_SIZE, else 1), at most the cores that ``busy`` (cores other
    work keeps busy) leaves, less ``workers``, at least 1; OMP_NUM_THREADS wins."""
    env = os.environ if env is None else env
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        if not omp.isdigit() or int(omp) < 1:
            raise InputError(f"OMP_NUM_THREADS={omp!r}: not a positive whole number (unset it to have the "
                             f"threads chosen from the cores)")
        return int(omp), "OMP_NUM_THREADS"
    cores = usable_cores() if cores is None else cores
    local = max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
    taken = min(cores, int(busy + 0.5))            # a core more than half busy is taken
    n = max(1, min(cores // local, cores - taken) - workers)
    why = f"{cores} cores / {local} processes" + (f", {taken} busy with other work" if taken else "")
    return n, f"{why} - {workers} loader workers"


def set_threads(workers: int = 0) -> str:
    """Set this process's intra-op threads (intra_op_threads, with the cores other work keeps busy
    measured now) and say so, e.g. for a start summary."""
    import torch

    busy = 0.0 if os.environ.get("OMP_NUM_THREADS", "").strip() else busy_cores()
    n, why = intra_op_threads(workers, busy=busy)
    torch.set_num_threads(n)
    return f"{n} intra-op thread{'s' if n != 1 else ''} ({why})"
