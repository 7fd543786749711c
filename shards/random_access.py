"""Any frames of any video through the index's byte offsets, without reading a shard through.

Frames of one video are consecutive tar members, so a run of consecutive frame numbers (and runs
close to each other) is fetched with one ranged read (local ``pread``, or a byte range of any URL fsspec reads: http(s), s3, gs,
memory...) and sliced by the index's offsets; a video's runs go out as one batch of ranges.
Evaluation uses it for evenly spaced clips per video.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .decode import CorruptFrame, Decoder, frame_error
from .decoders import make_decoder
from .errors import RunFailed
from .format import STATUS_OK, frame_member
from .index import ShardIndex, read_index
from .source_reads import RangeReader
from .sources import join
from .tar_stream import BLOCK, octal


def runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique indices as [first, last] runs of consecutive numbers."""
    idx = np.unique(np.asarray(indices, np.int64))
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist()))


class FrameMismatch(ValueError):
    """A tar member where the index puts a frame is not that frame (wrong name or size, no valid
    header there, or an offset outside the shard); the message names the frame, not the shard."""


class ShardMismatchError(RunFailed, FrameMismatch):
    """A FrameMismatch with the shard and video named (what random access raises)."""


# Frames of a pair at a playback rate above 1 are not consecutive: reading each run alone cost a
# worker one pread and its Python per frame. Runs less than this many bytes apart are read as one
# range (the bytes between are read and dropped): far cheaper than a call, let alone a request.
MERGE_GAP = 64 * 1024


def fetch_frames(read, key: str, offsets: np.ndarray, sizes: np.ndarray, frames, read_many=None,
                 merge_gap: int = MERGE_GAP) -> dict[int, bytes]:
    """{frame: JPEG bytes} for ``frames`` of the video ``key``, one ``read(start, end)`` per range
    (or one ``read_many([(start, end), ...])`` for all ranges, where given): runs of consecutive
    frames, and runs less than ``merge_gap`` bytes apart, are one range.

    Each range is read from the header block of its first frame, so every frame's 512-byte tar
    header lies inside the buffer and is checked (name, size, checksum): a shard that disagrees with
    its index fails here instead of handing out the wrong pixels.
    """
    out: dict[int, bytes] = {}
    idx = np.unique(np.asarray(frames, np.int64))
    if not len(idx):
        return out
    bad = idx[(offsets[idx] < BLOCK) | (sizes[idx] < 0)]
    if len(bad):   # an index edited or damaged by hand: os.pread would fail with a bare EINVAL
        f = int(bad[0])
        raise FrameMismatch(f"frame {f}: the index puts it at byte {int(offsets[f])} with {int(sizes[f])} bytes, "
                            f"outside any tar member: the index is damaged")
    starts = offsets[idx].astype(np.int64) - BLOCK
    padded_ends = offsets[idx].astype(np.int64) + (sizes[idx].astype(np.int64) + BLOCK - 1) // BLOCK * BLOCK
    groups = np.split(idx, np.flatnonzero(starts[1:] - padded_ends[:-1] > merge_gap) + 1)   # consecutive: 0 apart
    ranges = [(int(offsets[g[0]]) - BLOCK, int(offsets[g[-1]] + sizes[g[-1]])) for g in groups]
    blobs = read_many(ranges) if read_many is not None else [read(a, b) for a, b in ranges]
    for g, (start, _), blob in zip(groups, ranges, blobs):
        ats = offsets[g].astype(np.int64) - start
        sums = header_sums(blob, ats - BLOCK)
        for f, at, total in zip(g.tolist(), ats.tolist(), sums.tolist()):
            hdr = blob[at - BLOCK: at]
            name = frame_member(key, f).encode()[:100]
            if stored_checksum(hdr) != total:
                raise FrameMismatch(f"frame {f}: no valid tar header at byte {int(offsets[f]) - BLOCK} (checksum "
                                    f"mismatch): the shard is damaged or is not the one its index describes")
            if hdr[:100].rstrip(b"\0") != name or octal(hdr[124:136]) != int(sizes[f]):
                raise FrameMismatch(f"frame {f}: the tar member at byte {int(offsets[f]) - BLOCK} is "
                                    f"{member_name(hdr)!r} of {octal(hdr[124:136])} bytes, not "
                                    f"{name.decode()!r} of {int(sizes[f])} bytes")
            out[f] = blob[at: at + int(sizes[f])]
    return out


def member_name(header: bytes, most: int = 60) -> str:
    """A header's member name for a message: at most ``most`` characters, undecodable bytes replaced."""
    text = header[:100].rstrip(b"\0").decode("utf-8", "replace")
    return text if len(text) <= most else text[:most] + "..."


def header_sums(blob: bytes, starts: np.ndarray) -> np.ndarray:
    """The ustar checksum each 512-byte header at ``starts`` in ``blob`` should store (its bytes
    summed, the checksum field counted as spaces), for all of them at once: summing each header in
    Python cost a loader worker ~10 us per frame."""
    hdrs = np.frombuffer(blob, np.uint8)[starts[:, None] + np.arange(BLOCK)].astype(np.int64)
    return hdrs.sum(axis=1) - hdrs[:, 148:156].sum(axis=1) + 8 * 32


def stored_checksum(header: bytes) -> int:
    """The checksum a header stores (-1 where the field is not octal)."""
    text = header[148:156].rstrip(b"\0 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return -1


class FrameReader:
    """Frames by row and frame number; ``timeout`` and ``retries`` apply to each remote read; frames
    are decoded by ``decoder`` (a name in shards.decoders.DECODERS, or a Decoder), whose ``clip`` makes
    clips of them."""

    def __init__(self, shards: str, index: ShardIndex | None = None, max_open: int = 16,
                 timeout: float = 60.0, retries: int = 3, decoder: str | Decoder = "cpu", device=None,
                 merge_gap: int = MERGE_GAP):
        self.decoder = make_decoder(decoder, device)
        self.merge_gap = merge_gap
        self.location = str(shards)
        self.timeout, self.retries = timeout, retries
        self.index = index if index is not None else read_index(shards)
        self._open: OrderedDict[int, RangeReader] = OrderedDict()
        self.max_open = max_open
        self.reads = 0  # byte ranges read, for tests and benchmarks
        self.keys = self.index.keys()

    def _reader(self, shard: int) -> RangeReader:
        r = self._open.pop(shard, None)
        if r is None:
            r = RangeReader(join(self.location, self.index.shards[shard]), timeout=self.timeout, retries=self.retries)
        self._open[shard] = r
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return r

    def read_jpegs(self, row: int, frames) -> list[bytes]:
        """JPEG bytes of ``frames`` (frame numbers, any order, repeats allowed) of video ``row``."""
        if self.index.status[row] != STATUS_OK:
            raise KeyError(f"video {self.index.video_id[row]} has status {int(self.index.status[row])}, no frames")
        frames = np.asarray(frames, np.int64)
        n = int(self.index.n_frames[row])
        if len(frames) and (frames.min() < 0 or frames.max() >= n):
            raise IndexError(f"video {self.index.video_id[row]} has {n} frames; asked for {frames.min()}..{frames.max()}")
        offs, sizes = self.index.frames_of(row)
        reader = self._reader(int(self.index.shard[row]))

        def read_many(ranges):
            self.reads += len(ranges)
            return reader.read_many(ranges)

        try:
            got = fetch_frames(reader.read, self.keys[row], offs, sizes, frames, read_many=read_many,
                               merge_gap=self.merge_gap)
        except FrameMismatch as exc:
            raise ShardMismatchError(f"shard {reader.location}: video {self.index.video_id[row]}: {exc}") from None
        return [got[int(f)] for f in frames]

    def read_frames(self, row: int, frames):
        """The decoder's frames (the CPU decoder: [n, H, W, 3] uint8 RGB), each JPEG's header checked
        against the index's H x W first; a corrupt frame is a CorruptFrameError naming shard, video and
        frame number."""
        frames = np.asarray(frames, np.int64)
        jpegs = self.read_jpegs(row, frames)
        try:
            return self.decoder.frames(jpegs, int(self.index.attrs["height"]), int(self.index.attrs["width"]))
        except CorruptFrame as exc:
            shard = join(self.location, self.index.shards[int(self.index.shard[row])])
            raise frame_error(shard, str(self.index.video_id[row]), frames, exc) from None

    def close(self) -> None:
        for r in self._open.values():
            r.close()
        self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def evenly_spaced_clips(n_frames: int, n_clips: int = 10, clip_len: int = 16, stride: int = 1) -> np.ndarray:
    """[n_clips, clip_len] frame numbers of clips centred at evenly spaced positions (VCOP/IIC protocol).

    Centres sit at (k + 0.5) / n_clips of the video; a clip that would run off an end is moved
    inside, and a video shorter than one clip repeats its last frame.
    """
    span = (clip_len - 1) * stride + 1
    centres = (np.arange(n_clips) + 0.5) * n_frames / n_clips
    starts = np.clip(np.round(centres - span / 2).astype(np.int64), 0, max(0, n_frames - span))
    idx = starts[:, None] + stride * np.arange(clip_len)[None, :]
    return np.minimum(idx, n_frames - 1)
