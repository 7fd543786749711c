"""A shard set on a non-HTTP fsspec scheme (the in-process memory://) reads exactly as the local set:
index, streamed clip pairs, and random access."""
from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest
import torch

from shards.index import VIDEO_ARRAYS, read_index
from shards.random_access import FrameReader, evenly_spaced_clips
from shards.stream import PairLoader, StreamConfig
from tests.servers import Faults, faulty_http_server


@pytest.fixture(scope="module")
def memory_shards(real_ucf_shards):
    """The real shard set (tars and index.zarr) copied into memory://."""
    fs = fsspec.filesystem("memory")
    base = f"/remote-schemes-{uuid.uuid4().hex[:8]}/shards"
    for p in real_ucf_shards.rglob("*"):
        if p.is_file():
            fs.pipe_file(f"{base}/{p.relative_to(real_ucf_shards).as_posix()}", p.read_bytes())
    yield f"memory://{base}"
    fs.rm(base.rsplit("/", 1)[0], recursive=True)


def test_the_index_reads_the_same(real_ucf_shards, memory_shards):
    local, remote = read_index(real_ucf_shards), read_index(memory_shards)
    assert remote.attrs == local.attrs
    for name in (*VIDEO_ARRAYS, "frame_ptr", "frame_offset", "frame_size"):
        a, b = getattr(remote, name), getattr(local, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def loader_batches(location):
    # batches of one: an epoch then delivers all 11 videos, whatever order the reader takes
    cfg = StreamConfig(location, batch_size=1, shuffle_buffer=4, out_size=(32, 32))
    return list(PairLoader(cfg, num_workers=0, pin_memory=False))


def assert_same_batches(got, want):
    """Every video's clip pair (frames, indices, labels) as the local set gives it. Streamed sets
    are read shard by shard and local ones in any order, so the order of the videos may differ."""
    by_video = lambda batches: {b["video_id"][0]: b for b in batches}  # noqa: E731
    got, want = by_video(got), by_video(want)
    assert sorted(got) == sorted(want) and len(want) == 11
    for vid, w in want.items():
        for k, v in w.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(got[vid][k], v), (vid, k)


def test_streamed_clip_pairs_are_the_local_ones(real_ucf_shards, memory_shards):
    assert_same_batches(loader_batches(memory_shards), loader_batches(str(real_ucf_shards)))


def test_random_access_returns_the_local_frames(real_ucf_shards, memory_shards):
    index = read_index(real_ucf_shards)
    with FrameReader(str(real_ucf_shards), index) as local, FrameReader(memory_shards) as remote:
        for row in index.select():
            frames = evenly_spaced_clips(int(index.n_frames[row]), n_clips=3, clip_len=4, stride=2).ravel()
            assert remote.read_jpegs(int(row), frames) == local.read_jpegs(int(row), frames)
        assert np.array_equal(remote.read_frames(int(row), [0, 1]), local.read_frames(int(row), [0, 1]))
        assert remote.reads == local.reads


def test_streaming_over_a_flaky_slow_server_gives_the_local_batches(real_ucf_shards, monkeypatch):
    from shards import sources

    monkeypatch.setattr(sources, "BACKOFF", 0.001)
    # short chunks, and the first shard download cut about half way
    faults = Faults(chunk=30_000, cut_after=300_000, cut_gets=1, cut_delay=0.3, only=".tar")
    with faulty_http_server(real_ucf_shards, faults) as url:
        got = loader_batches(url)
    assert_same_batches(got, loader_batches(str(real_ucf_shards)))
    assert sum(1 for m, p, r in faults.requests if m == "GET" and r and p.endswith(".tar")) == 1   # resumed by a Range request


def test_an_index_behind_a_failing_server_is_named_with_its_status(real_ucf_shards):
    from shards.index import IndexError_

    with faulty_http_server(real_ucf_shards, Faults(statuses=[500] * 50)) as url:
        with pytest.raises(IndexError_, match=rf"cannot read {url}/index.zarr: HTTP 500 Internal Server Error$"):
            read_index(url)
