"""The Dask cluster a build runs on: the user's (``--scheduler``), or a LocalCluster of our own.

Our own LocalCluster runs lean. Its workers only run transcode tasks, and nobody watches a
dashboard, so the background work a worker and the in-driver scheduler do for people looking at one
is turned down: the statistical profiler (a stack sample every 10 ms), the event-loop health tick
(every 20 ms), the system monitor (every 0.5 s) and the memory monitor (every 0.1 s). Measured with
the real clips (bench/preprocess.py's part-3 set, 2 workers, shared 2-core machine): the workers'
own CPU over the job fell from about 2.2 to 1.4 s and the driver's from 0.65 to 0.25 s, beside
11.4 s of ffmpeg. A cluster given with ``--scheduler`` keeps its owner's settings.
"""
from __future__ import annotations

import os

from preprocess.interrupts import sigint_ignored_by_children
from shards.errors import InputError

LEAN_LOCAL_CLUSTER = {
    # Workers forked from a forkserver, not spawned: each spawned worker re-imports distributed,
    # and closing them takes a second more (2 workers on the shared 2-core CPU: start 3.1 -> 1.7 s,
    # close 1.0 -> 0.1 s). The forkserver is single-threaded, so forking it is safe.
    "distributed.worker.multiprocessing-method": "forkserver",
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def connect(args, in_process: bool = False):
    """A client of ``--scheduler``'s cluster, or of a LocalCluster of our own (its worker threads
    ``in_process`` when the output lives in this process's memory: memory://)."""
    import dask
    from distributed import Client, LocalCluster

    if args.scheduler:
        try:
            return Client(args.scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}") from None
    n = args.workers or os.cpu_count() or 1
    # Workers read the config as it is when their nanny starts them, so it is set around the start.
    with sigint_ignored_by_children(), dask.config.set(LEAN_LOCAL_CLUSTER):
        if in_process:
            cluster = LocalCluster(n_workers=1, threads_per_worker=n, processes=False, dashboard_address=None,
                                   worker_dashboard_address=None)
        else:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster
