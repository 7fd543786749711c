"""The clip-pair loader: an IterableDataset over the epoch plan (its resumable DataLoader,
PairLoader, is in shards.pair_loader).

Each DataLoader worker computes its part of the epoch plan (shards.epoch_plan) from (seed, epoch)
itself, so workers persist across epochs: the epoch and the batches already delivered reach them
through a small shared-memory tensor written before each epoch's iteration starts.

Determinism and resume. Everything a batch depends on is a function of (seed, epoch, rank, worker)
and of the video (its pair is drawn from (seed, epoch, key)). "n batches delivered" says how many
each worker had produced (round-robin), so a resumed epoch has each worker pass over that many.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
from typing import Iterator

import numpy as np
import torch

from .decode import CorruptFrame, SimpleJpegDecoder, check_headers
from .decode_torch import add_encoded, new_encoded_batch
from .epoch_plan import (EpochOrder, batches_done, batches_per_rank, role_of, split_advice, worker_quotas,
                         worker_rows)
from .errors import CstpError
from .index import ShardIndex, read_index
from .pairs import draw, fill, needed_frames, new_batch
from .readers import ReadContext, ShardDataError, local_samples, streamed_samples
from .sampling import PairConfig, min_frames
from .sources import is_url

MAX_PASSES = 3   # with skip_errors, re-reads of a worker's videos to make up for skipped samples
PREFETCH = 2     # batches the DataLoader asks of each worker ahead (its prefetch_factor)
# A worker writes its batches into a ring of shared-memory buffers that the main process made (and
# mapped) before the workers started, and sends only the slot: no shared-memory file, no file
# descriptor passing, no pickled tensor per batch. Each slot has a flag in shared memory: the worker
# sets it when it starts writing the slot and waits for it to be clear before it writes the slot
# again; the main process clears it once the batch is no longer read (copied out, or, when batches
# are lent, once the next one is asked for). So a slot is never rewritten while it is read, whatever
# number of requests the DataLoader has out to one worker (more than PREFETCH once another worker
# has finished its epoch).
RING = PREFETCH + 2
RING_WAIT_S = 0.0002     # a worker's poll of a slot's flag; it waits only when the consumer lags


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    shards: str                       # shard set folder or URL
    batch_size: int = 8
    split: str | None = None          # e.g. "1"; None: every ok video
    role: int = 1                     # SPLIT_TRAIN
    seed: int = 0
    shuffle_buffer: int = 32          # samples a streaming worker holds for its shuffle
    out_size: tuple[int, int] = (112, 112)
    pair: PairConfig = PairConfig()
    skip_errors: bool = False         # skip (and count) broken shards and samples instead of raising
    max_skip_fraction: float = 0.01   # with skip_errors: stop once more than this fraction of an epoch is skipped
    io_timeout: float = 60.0          # seconds allowed per remote read
    io_retries: int = 3               # retries of a transient remote error, with backoff
    decode: str = "cpu"               # data.decode: "cpu" decodes in the workers; "gpu": workers send JPEG
                                      # bytes and the training process decodes them (shards.decode_torch)


def dist_env() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else torchrun's environment."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class _WorkerFailure:
    """An expected error raised in a worker, carried to the main process whole (the DataLoader
    would re-raise it with its traceback as the message)."""

    def __init__(self, exc: CstpError):
        self.exc = exc


class ClipPairStream(torch.utils.data.IterableDataset):
    def __init__(self, cfg: StreamConfig, num_workers: int = 0, rank: int | None = None,
                 world_size: int | None = None, index: ShardIndex | None = None):
        super().__init__()
        self.cfg = cfg
        self.index = index if index is not None else read_index(cfg.shards)
        r, w = dist_env()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.num_workers = max(1, num_workers)
        self.selected = self.index.select(cfg.split, cfg.role if cfg.split is not None else None)
        ok = self.index.n_frames[self.selected] >= min_frames(cfg.pair)
        # Reported, never silent: videos too short for a clip pair are left out of training.
        self.too_short = [str(self.index.video_id[r]) for r in self.selected[~ok]]
        rows = self.selected[ok]
        self.rows = rows[np.lexsort((self.index.frame_offset[self.index.frame_ptr[rows]], self.index.shard[rows]))]
        self.batches = batches_per_rank(len(self.rows), cfg.batch_size, self.world_size, f"{cfg.shards}: ",
                                        split_advice(self.index, cfg.split, cfg.role, min_frames(cfg.pair)))
        self.order = EpochOrder(self.rows, self.index.shard[self.rows], cfg.seed,
                                self.batches * cfg.batch_size * self.world_size, whole_shards=is_url(cfg.shards))
        self.keys = self.index.keys()
        self.key_row = {k: r for r, k in enumerate(self.keys)}
        self.errors: list[str] = []
        # [epoch, delivered, samples skipped by each worker slot]: shared with persistent workers
        self.shared = torch.zeros(2 + self.num_workers, dtype=torch.int64).share_memory_()
        self.ring: list[list[dict]] | None = None
        self.busy: torch.Tensor | None = None      # [worker slot, ring slot]: 1 while the batch there is in use
        self.height, self.width = int(self.index.attrs["height"]), int(self.index.attrs["width"])
        self._decoder, self._frames = SimpleJpegDecoder(), None

    def batches_per_epoch(self, epoch: int | None = None) -> int:
        return self.batches

    def set_epoch(self, epoch: int, delivered: int = 0) -> None:
        """Start ``epoch``, as if ``delivered`` of its batches had already been handed out."""
        self.shared[0], self.shared[1] = epoch, delivered

    @property
    def epoch(self) -> int:
        return int(self.shared[0])

    def skipped(self) -> int:
        return int(self.shared[2:].sum())

    def reset_skipped(self) -> None:
        self.shared[2:] = 0

    # -- one worker's epoch -------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        slot, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        if n_workers != self.num_workers:
            raise RuntimeError(f"ClipPairStream was planned for {self.num_workers} workers but runs in "
                               f"{n_workers}: pass num_workers= to both")
        epoch, delivered = int(self.shared[0]), int(self.shared[1])
        worker = role_of(slot, n_workers, delivered)
        quota = worker_quotas(self.batches, n_workers)[worker]
        rows = worker_rows(self.order.delivered(epoch), self.rank, worker, self.cfg.batch_size, n_workers, self.batches)
        ring = info is not None and self.ring is not None     # a plain DataLoader gets fresh batches (and gpu decoding)
        buffers = self._ring_of(slot) if ring else None
        batches = self._batches(rows, epoch, worker, slot, quota, batches_done(worker, n_workers, delivered), buffers)
        if info is None:
            yield from batches
            return
        try:
            for k, batch in enumerate(batches):
                yield {"ring": (slot, k % RING), "video_id": batch["video_id"]} if ring else batch
        except CstpError as exc:
            yield _WorkerFailure(exc)

    def make_ring(self) -> None:
        """RING shared-memory batch buffers per worker slot, made before the workers start (they
        inherit them), so that a batch crosses to the main process as a slot number alone."""
        self.ring = [[new_batch(self.cfg.batch_size, self.cfg.pair.clip_len, self.cfg.out_size) for _ in range(RING)]
                     for _ in range(self.num_workers)]
        self.busy = torch.zeros((self.num_workers, RING), dtype=torch.int32).share_memory_()
        for b in (b for slot in self.ring for b in slot):
            for v in b.values():
                if isinstance(v, torch.Tensor):
                    v.share_memory_()

    def release(self, slot: int, k: int) -> None:
        """Ring slot ``k`` of worker slot ``slot`` may be written again (called by the main process)."""
        self.busy[slot, k] = 0

    def _ring_of(self, slot: int) -> Iterator[dict]:
        """Worker ``slot``'s ring buffers in turn, each once the main process has released it. A
        worker's new iteration starts with its whole ring free: the main process gave up the batches
        of the previous one when it started this one."""
        busy = self.busy[slot].numpy()
        busy[:] = 0
        for k in itertools.count():
            while busy[k % RING]:
                time.sleep(RING_WAIT_S)
            busy[k % RING] = 1
            batch = self.ring[slot][k % RING]
            batch["video_id"] = []
            yield batch

    def _batches(self, rows: np.ndarray, epoch: int, worker: int, slot: int, quota: int, done: int,
                 buffers: Iterator[dict] | None) -> Iterator[dict]:
        B, cfg = self.cfg.batch_size, self.cfg
        self._budget = (quota * B, slot, f"rank {self.rank} worker {worker} in epoch {epoch}")
        produced, filled, batch = done, 0, None
        for row, pair, frames in self._samples(rows, epoch, worker, done * B):
            if produced >= quota:
                break
            sample = self._sample(row, pair, frames)
            if sample is None:
                continue
            if batch is None:
                batch = next(buffers) if buffers is not None else self._new_batch()
            label, vid = int(self.index.label[row]), str(self.index.video_id[row])
            if cfg.decode == "cpu":
                fill(batch, filled, pair, *sample, label, vid, cfg.out_size)
            else:
                add_encoded(batch, filled, pair, *sample, label, vid, self.ctx.shard_location(row))
            filled += 1
            if filled == B:
                produced, filled = produced + 1, 0
                yield batch
                batch = None
        if produced < quota:
            raise ShardDataError(f"rank {self.rank} worker {worker} produced {produced} of its {quota} batches "
                                 f"in epoch {epoch}; errors: {self.errors[:3]}")

    def _new_batch(self) -> dict:
        c = self.cfg
        if c.decode == "cpu":
            return new_batch(c.batch_size, c.pair.clip_len, c.out_size)
        return new_encoded_batch(c.batch_size, c.pair.clip_len)

    def _sample(self, row: int, pair, frames: dict[int, bytes]) -> tuple | None:
        """(needed frame numbers, their pixels (cpu) or JPEG bytes (gpu)), each frame's header checked
        against the index's H x W first; None for a corrupt frame (named through _fail)."""
        needed = needed_frames(pair)
        jpegs = [frames[int(f)] for f in needed]
        try:
            if self.cfg.decode != "cpu":
                check_headers(jpegs, self.height, self.width)
                return needed, jpegs
            if self._frames is None:     # the worker's one frame buffer: a pair needs at most 2T frames
                self._frames = np.empty((2 * self.cfg.pair.clip_len, self.height, self.width, 3), np.uint8)
            return needed, self._decoder.frames(jpegs, self.height, self.width, out=self._frames)
        except CorruptFrame as exc:
            self._fail(f"shard {self.ctx.shard_location(row)}: video {self.keys[row]}: frame "
                       f"{int(needed[exc.position])}: {exc.reason}", 1)
            return None

    def _samples(self, rows: np.ndarray, epoch: int, worker: int, skip: int) -> Iterator:
        """The worker's (row, pair, frames), its first ``skip`` passed over (a resumed epoch).

        With ``skip_errors`` a skipped sample leaves the worker short of its quota; it then reads its
        videos again in another order (repeats, rather than a rank that stalls the others)."""
        cfg = self.cfg
        self.ctx = ReadContext(self.index, self.keys, self.key_row, str(cfg.shards), cfg.io_timeout, cfg.io_retries,
                               lambda row: draw(cfg.seed, epoch, self.keys[row], int(self.index.n_frames[row]),
                                                int(self.index.attrs["height"]), int(self.index.attrs["width"]), cfg.pair),
                               self._fail)
        streamed = is_url(cfg.shards)
        for p in range(MAX_PASSES if cfg.skip_errors else 1):
            order = rows if p == 0 else rows[np.random.default_rng([cfg.seed, epoch, self.rank, worker, p]).permutation(len(rows))]
            if streamed:
                items = _shuffled(streamed_samples(self.ctx, order), cfg.shuffle_buffer,
                                  random.Random(f"{cfg.seed}-{epoch}-{self.rank}-{worker}-{p}"))
                for n, item in enumerate(items):
                    if p > 0 or n >= skip:
                        yield item
            else:
                # read by offset: the delivered samples need not be read at all
                yield from local_samples(self.ctx, order[skip:] if p == 0 else order)

    def _fail(self, msg: str, lost: int) -> None:
        if not self.cfg.skip_errors:
            raise ShardDataError(msg)
        self.errors.append(msg)
        total, slot, who = self._budget
        self.shared[2 + slot] += lost
        skipped = int(self.shared[2 + slot])
        if skipped > self.cfg.max_skip_fraction * total:
            raise ShardDataError(f"{who}: {skipped} of its {total} samples skipped, more than data.max_skip_fraction "
                                 f"{self.cfg.max_skip_fraction}; first: {self.errors[0]}")


def _shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    buf = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf.pop(rng.randrange(len(buf)))
    while buf:
        yield buf.pop(rng.randrange(len(buf)))
