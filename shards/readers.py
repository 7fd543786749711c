"""The JPEG bytes of the frames a worker's clip pairs need: local shards by byte offset, streamed
(http://) shards front to back.

Both yield ``(row, pair, {frame number: JPEG bytes})``. A local shard is read with one ``pread`` per
run of needed frames, each frame's tar header checked against the index, in whatever order the
plan gives. A streamed shard is read once, front to back, and only the members of the videos this
worker was dealt are kept (``tar_stream.iter_members``' ``want``); the rest are read past.

Failures go to ``ctx.fail(message, samples_lost)``, which raises unless skipping is on.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np

from .errors import RunFailed
from .index import ShardIndex
from .pairs import needed_frames
from .random_access import FrameMismatch, fetch_frames
from .sampling import PairSample
from .source_reads import RangeReader, open_stream
from .sources import SourceError, join
from .tar_stream import iter_members

MAX_OPEN = 64   # local shards a worker keeps open (a random order touches every shard)


class ShardDataError(RunFailed):
    """A shard that is truncated or disagrees with the index; the message names shard and video."""


@dataclasses.dataclass
class ReadContext:
    index: ShardIndex
    keys: list[str]                      # tar key of each row
    key_row: dict[str, int]
    location: str                        # shard set folder or URL
    timeout: float
    retries: int
    draw: Callable[[int], PairSample]    # row -> its clip pair in this epoch
    fail: Callable[[str, int], None]     # (message, samples lost); raises unless skipping

    def shard_location(self, row: int) -> str:
        return join(self.location, self.index.shards[int(self.index.shard[row])])


def local_samples(ctx: ReadContext, rows: np.ndarray) -> Iterator[tuple[int, PairSample, dict]]:
    readers: OrderedDict[str, RangeReader] = OrderedDict()
    try:
        for row in (int(r) for r in rows):
            path = ctx.shard_location(row)
            try:
                reader = readers.pop(path, None) or RangeReader(path, timeout=ctx.timeout, retries=ctx.retries)
                readers[path] = reader
                while len(readers) > MAX_OPEN:
                    readers.popitem(last=False)[1].close()
                pair = ctx.draw(row)
                offs, sizes = ctx.index.frames_of(row)
                frames = fetch_frames(reader.read, ctx.keys[row], offs, sizes, needed_frames(pair))
            except (FrameMismatch, SourceError) as exc:
                ctx.fail(f"shard {path}: video {ctx.index.video_id[row]}: {exc}", 1)
                continue
            yield row, pair, frames
    finally:
        for r in readers.values():
            r.close()


def by_shard(index: ShardIndex, rows: np.ndarray) -> list[tuple[int, set[int]]]:
    """(shard, its rows) in the order the shards first appear in ``rows``."""
    groups: dict[int, set[int]] = {}
    for r in rows:
        groups.setdefault(int(index.shard[r]), set()).add(int(r))
    return list(groups.items())


def streamed_samples(ctx: ReadContext, rows: np.ndarray) -> Iterator[tuple[int, PairSample, dict]]:
    for s, wanted in by_shard(ctx.index, rows):
        yield from _stream_shard(ctx, join(ctx.location, ctx.index.shards[s]), wanted)


class _StreamedVideos:
    """The videos of one streamed shard as its members pass: which members to keep (``want``, given to
    ``iter_members``), the pairs complete and not yet yielded (``ready``), the rows yielded or failed
    (``done``)."""

    def __init__(self, ctx: ReadContext, url: str, wanted: set[int]):
        self.ctx, self.url, self.wanted = ctx, url, wanted
        self.cur: dict = {"key": None, "row": None}
        self.ready: list = []
        self.done: set[int] = set()

    def close_video(self) -> None:
        ctx, cur = self.ctx, self.cur
        row = cur["row"]
        if row is None:
            return
        n = int(ctx.index.n_frames[row])
        if cur["count"] != n or len(cur["frames"]) != len(cur["needed"]):
            self.done.add(row)
            ctx.fail(f"shard {self.url}: video {ctx.index.video_id[row]} has {cur['count']} frames in the tar, "
                     f"the index says {n}", 1)
        else:
            self.ready.append((row, cur["pair"], cur["frames"]))

    def want(self, name: str) -> bool:
        ctx, cur = self.ctx, self.cur
        key, _, suffix = name.partition(".")
        if key != cur["key"]:
            self.close_video()
            cur.update(key=key, row=None)
            row = ctx.key_row.get(key)
            if row is None:
                ctx.fail(f"shard {self.url}: sample {key!r} has no row in the index (member {name!r})", 0)
            elif row in self.wanted:
                pair = ctx.draw(row)
                cur.update(row=row, pair=pair, count=0, frames={}, needed=set(needed_frames(pair).tolist()))
        if cur["row"] is None or not suffix.endswith("jpg"):
            return False
        cur["count"] += 1
        try:
            return int(suffix.split(".")[0]) in cur["needed"]
        except ValueError:
            return False

    def keep(self, name: str, data: bytes) -> None:
        self.cur["frames"][int(name.split(".")[1])] = data


def _stream_shard(ctx: ReadContext, url: str, wanted: set[int]) -> Iterator[tuple[int, PairSample, dict]]:
    videos = _StreamedVideos(ctx, url, wanted)
    last = None
    try:
        stream = open_stream(url, timeout=ctx.timeout, retries=ctx.retries)
        try:
            for name, data in iter_members(stream, videos.want, seekable=False):
                if data is not None:
                    videos.keep(name, data)
                while videos.ready:
                    item = videos.ready.pop(0)
                    videos.done.add(item[0])
                    last = ctx.index.video_id[item[0]]
                    yield item
            videos.close_video()
            videos.done.update(item[0] for item in videos.ready)
            yield from videos.ready
        finally:
            stream.close()
    except ShardDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - tar, network and format errors alike
        where = f"after video {last}" if last is not None else "before its first video"
        msg = str(exc) if isinstance(exc, SourceError) else f"shard {url} is unreadable {where}: {type(exc).__name__}: {exc}"
        ctx.fail(msg, len(wanted - videos.done))
        return
    missing = sorted(str(ctx.index.video_id[r]) for r in wanted - videos.done)
    if missing:
        ctx.fail(f"shard {url}: videos {missing[:3]} the index puts here are not in the tar", len(missing))
