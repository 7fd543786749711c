"""Small helpers the test modules share."""
from __future__ import annotations

import time

import numpy as np

from shards.index import read_index

VOLATILE_ATTRS = ()


def index_arrays(shard_dir) -> dict:
    """Everything an index holds, as plain Python/numpy values, for equality checks."""
    idx = read_index(shard_dir)
    out = {k: v for k, v in vars(idx).items() if k != "attrs"}
    out["attrs"] = idx.attrs
    return out


def assert_same_index(a, b):
    ia, ib = index_arrays(a), index_arrays(b)
    assert ia["attrs"] == ib["attrs"]
    for k in ia:
        if k != "attrs":
            np.testing.assert_array_equal(ia[k], ib[k], err_msg=k)


def when_two_shards_in_flight(job, out, act, timeout: float = 120) -> bool:
    """Call ``act()`` once the build ``job`` (a Popen) writes two shards at once (two temporary tars
    in ``out``): both workers are then mid-shard. False if the job ended or ``timeout`` passed first."""
    deadline = time.time() + timeout
    while time.time() < deadline and job.poll() is None:
        if out.is_dir() and len(list(out.glob(".*.tar.tmp-*"))) >= 2:
            act()
            return True
        time.sleep(0.005)
    return False
