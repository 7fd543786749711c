"""Small helpers the test modules share."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from shards.index import ShardIndex, read_index

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


def copied_video_tar(src, dst, nth: int) -> tuple[ShardIndex, int, Path, bytearray]:
    """Copy the shard set ``src`` to ``dst`` and take its ``nth`` video (of ``index.select()``): the
    copy's index, the video's row, the tar that holds it, and that tar's bytes as a bytearray to
    damage (a test writes them back with ``tar.write_bytes``)."""
    shutil.copytree(src, dst)
    index = read_index(dst)
    row = int(index.select()[nth])
    tar = Path(dst) / index.shards[index.shard[row]]
    return index, row, tar, bytearray(tar.read_bytes())


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
