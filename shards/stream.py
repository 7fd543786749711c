"""Streaming clip-pair dataset over shard tars, for multi-node pretraining.

Composable stages in the webdataset manner: shard plan -> open -> tar members, only the frames the
video's clip pair needs (``tar_stream``; checked against the index) -> seeded shuffle buffer ->
clips (decode, crop, resize, rotate) -> batch. The tars are plain WebDataset shards, which
``webdataset.WebDataset`` reads as well; our reader is ours because it skips unneeded frames.

Splitting. Shards are dealt to ranks, then to DataLoader workers, by a balanced greedy deal over a
(seed, epoch) permutation, using the index's per-shard video counts. Each worker is then given a
batch quota so that every rank yields exactly ``batches_per_epoch(epoch)`` batches whatever the shard
sizes (DDP never waits on a rank that ran dry); samples beyond a quota are left for later epochs.

Determinism and resume. Everything a batch depends on is a function of (seed, epoch, rank, worker)
and of the video (its clip pair is drawn from a generator seeded by seed, epoch and the video key).
The DataLoader hands out batches round-robin over workers, so "n batches delivered" says how many
each worker had produced; a resumed epoch has each worker pass over (not decode) that many.
"""
from __future__ import annotations

import dataclasses
import random
import zlib
from typing import Iterator

import numpy as np
import torch

from .clips import clip_from_frames, decode_jpegs
from .errors import RunFailed
from .index import ShardIndex, read_index
from .sampling import PairConfig, PairSample, min_frames, sample_pair
from .random_access import FrameMismatch, fetch_frames
from .sources import RangeReader, SourceError, is_url, join, open_stream
from .tar_stream import iter_members


class ShardDataError(RunFailed):
    """A shard that is truncated or disagrees with the index; the message names shard and video."""


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    shards: str                       # shard set folder or URL
    batch_size: int = 8
    split: str | None = None          # e.g. "1"; None: every ok video
    role: int = 1                     # SPLIT_TRAIN
    seed: int = 0
    shuffle_buffer: int = 32          # samples held per worker for the sample shuffle
    out_size: tuple[int, int] = (112, 112)
    pair: PairConfig = PairConfig()
    skip_errors: bool = False         # skip (and count) broken shards and samples instead of raising
    max_skip_fraction: float = 0.01   # with skip_errors: stop once more than this fraction of an epoch is skipped
    io_timeout: float = 60.0          # seconds allowed per remote read
    io_retries: int = 3               # retries of a transient remote error, with backoff


def dist_env() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else torchrun's environment."""
    import os

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def deal(sizes: dict[int, int], order: list[int], bins: int) -> list[list[int]]:
    """Deal items (in ``order``) into ``bins``, each to the bin with the least so far (ties: lowest)."""
    out: list[list[int]] = [[] for _ in range(bins)]
    load = [0] * bins
    for item in order:
        b = min(range(bins), key=lambda i: (load[i], i))
        out[b].append(item)
        load[b] += sizes[item]
    return out


def round_robin_skips(quotas: list[int], delivered: int) -> list[int]:
    """Batches each worker had produced when the DataLoader had delivered ``delivered`` in all."""
    return resume_point(quotas, delivered)[0]


def resume_point(quotas: list[int], delivered: int) -> tuple[list[int], int]:
    """(batches each worker had produced, the worker due next) after ``delivered`` batches.

    The DataLoader takes batches from its workers in turn, skipping those that are done. A new
    DataLoader starts its turn at worker slot 0, so a resumed epoch rotates the roles: slot j plays
    worker (next + j) % K, which continues the original order exactly.
    """
    k = len(quotas)
    done = [0] * k
    last = -1
    left = delivered
    while left > 0 and any(done[w] < quotas[w] for w in range(k)):
        for w in range(k):
            if left == 0:
                break
            if done[w] < quotas[w]:
                done[w] += 1
                last = w
                left -= 1
    nxt = 0
    if last >= 0:
        nxt = next(((last + i) % k for i in range(1, k + 1) if done[(last + i) % k] < quotas[(last + i) % k]), 0)
    return done, nxt


@dataclasses.dataclass
class EpochPlan:
    shards: list[list[list[int]]]     # [rank][worker] -> shard numbers, in reading order
    quotas: list[list[int]]           # [rank][worker] -> batches
    batches: int                      # per rank


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
        self.epoch = 0
        self.resume_delivered = 0
        rows = self.index.select(cfg.split, cfg.role if cfg.split is not None else None)
        need = min_frames(cfg.pair)
        short = rows[self.index.n_frames[rows] < need]
        self.rows = rows[self.index.n_frames[rows] >= need]
        # Reported, never silent: videos too short for a clip pair are left out of training.
        self.too_short = [str(self.index.video_id[r]) for r in short]
        self.row_set = set(int(r) for r in self.rows)
        self.counts = {s: int(n) for s, n in enumerate(np.bincount(self.index.shard[self.rows],
                                                                   minlength=len(self.index.shards)))}
        self.keys = self.index.keys()
        self.key_row = {k: r for r, k in enumerate(self.keys)}
        self.errors: list[str] = []

    # -- planning ---------------------------------------------------------------------------
    def plan(self, epoch: int) -> EpochPlan:
        shards = [s for s, n in self.counts.items() if n > 0]
        order = [shards[i] for i in np.random.default_rng([self.cfg.seed, epoch]).permutation(len(shards))]
        by_rank = deal(self.counts, order, self.world_size)
        per_worker = [deal(self.counts, rank_shards, self.num_workers) for rank_shards in by_rank]
        capacity = [[sum(self.counts[s] for s in ws) // self.cfg.batch_size for ws in rw] for rw in per_worker]
        batches = min(sum(c) for c in capacity)
        if batches == 0:
            raise ValueError(
                f"{self.cfg.shards}: {len(self.rows)} usable videos in {len(shards)} shards give rank(s) "
                f"{[r for r, c in enumerate(capacity) if sum(c) == 0]} no full batch of {self.cfg.batch_size} "
                f"(world size {self.world_size}, {self.num_workers} workers per rank): use smaller batches, "
                "fewer workers, or more shards")
        quotas = []
        for cap in capacity:
            q = list(cap)
            excess = sum(q) - batches
            while excess > 0:      # trim the fullest worker first, deterministically
                w = max(range(len(q)), key=lambda i: (q[i], -i))
                q[w] -= 1
                excess -= 1
            quotas.append(q)
        return EpochPlan(per_worker, quotas, batches)

    def batches_per_epoch(self, epoch: int | None = None) -> int:
        return self.plan(self.epoch if epoch is None else epoch).batches

    def set_epoch(self, epoch: int, delivered: int = 0) -> None:
        """Start ``epoch``, as if ``delivered`` of its batches had already been handed out."""
        self.epoch = epoch
        self.resume_delivered = delivered

    # -- stages ------------------------------------------------------------------------------
    def _fail(self, msg: str) -> None:
        if not self.cfg.skip_errors:
            raise ShardDataError(msg)
        self.errors.append(msg)

    def _samples(self, shard_numbers: list[int], epoch: int) -> Iterator[tuple[int, PairSample, dict]]:
        """(row, clip pair, {frame number: JPEG bytes}) for each selected video, in tar order.

        A video's clip pair depends only on (seed, epoch, key), so it is drawn when the video's
        first member goes by and only the frames it needs are read; the rest are skipped.
        """
        for s in shard_numbers:
            url = join(self.cfg.shards, self.index.shards[s])
            if not is_url(url):
                yield from self._local_samples(s, url, epoch)
                continue
            last = None
            state: dict = {"key": None}

            def finish():
                key = state["key"]
                if key is None or state["row"] is None:
                    return None
                row, n = state["row"], int(self.index.n_frames[state["row"]])
                if state["count"] != n or len(state["frames"]) != len(state["needed"]):
                    self._fail(f"shard {url}: video {self.index.video_id[row]} has {state['count']} frames in "
                               f"the tar, the index says {n}")
                    return None
                return row, state["pair"], state["frames"]

            def want(name: str) -> bool:
                key, _, suffix = name.partition(".")
                if key != state["key"]:
                    done = finish()
                    if done is not None:
                        state["ready"].append(done)
                    state.update(key=key, row=None, count=0, frames={}, needed=set())
                    row = self.key_row.get(key)
                    if row is None:
                        self._fail(f"shard {url}: sample {key!r} has no row in the index (member {name!r})")
                    elif row in self.row_set:
                        pair = self.draw(row, key, epoch)
                        state.update(row=row, pair=pair, needed=set(np.union1d(pair.idx1, pair.idx2).tolist()))
                if state["row"] is None or not suffix.endswith("jpg"):
                    return False
                state["count"] += 1
                try:
                    return int(suffix.split(".")[0]) in state["needed"]
                except ValueError:
                    return False

            state["ready"] = []
            try:
                stream = open_stream(url)
                try:
                    for name, data in iter_members(stream, want, seekable=not is_url(url)):
                        if data is not None:
                            state["frames"][int(name.split(".")[1])] = data
                        while state["ready"]:
                            item = state["ready"].pop(0)
                            last = self.index.video_id[item[0]]
                            yield item
                    done = finish()
                    if done is not None:
                        yield done
                finally:
                    stream.close()
            except ShardDataError:
                raise
            except Exception as exc:  # noqa: BLE001 - tar, network and format errors alike
                where = f"after video {last}" if last is not None else "before its first video"
                msg = str(exc) if isinstance(exc, SourceError) else \
                    f"shard {url} is unreadable {where}: {type(exc).__name__}: {exc}"
                self._fail(msg)

    def _local_samples(self, s: int, path: str, epoch: int) -> Iterator[tuple[int, PairSample, dict]]:
        """The same items from a local shard, front to back by the index's offsets: a pread per run
        of needed frames (their tar headers checked) instead of walking every member's header."""
        rows = [r for r in np.flatnonzero(self.index.shard == s) if int(r) in self.row_set]
        rows.sort(key=lambda r: self.index.frame_offset[self.index.frame_ptr[r]])
        last = None
        try:
            with RangeReader(path) as reader:
                for r in rows:
                    key = self.keys[r]
                    pair = self.draw(int(r), key, epoch)
                    offs, sizes = self.index.frames_of(r)
                    try:
                        frames = fetch_frames(reader.read, key, offs, sizes, np.union1d(pair.idx1, pair.idx2))
                    except (FrameMismatch, SourceError) as exc:
                        self._fail(f"shard {path}: video {self.index.video_id[r]}: {exc}")
                        continue
                    last = self.index.video_id[r]
                    yield int(r), pair, frames
        except SourceError as exc:
            self._fail(f"{exc}" + (f" (after video {last})" if last is not None else ""))

    def _shuffled(self, items: Iterator, rng: random.Random) -> Iterator:
        buf = []
        for item in items:
            buf.append(item)
            if len(buf) >= self.cfg.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        while buf:
            yield buf.pop(rng.randrange(len(buf)))

    def draw(self, row: int, key: str, epoch: int) -> PairSample:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch, zlib.crc32(key.encode())])
        h, w = int(self.index.attrs["height"]), int(self.index.attrs["width"])
        return sample_pair(int(self.index.n_frames[row]), h, w, cfg.pair, rng)

    def new_batch(self) -> dict:
        B, T, (h, w) = self.cfg.batch_size, self.cfg.pair.clip_len, self.cfg.out_size
        # B x 3 x T x H x W views of B x T x H x W x 3 storage: the resized frames come out of torch's
        # fast uint8 kernel channels-last, so writing them is a plain copy, not a transposition.
        # (Consumers see the contract's shape; .contiguous() gives the dense layout where needed.)
        return {"clip1": torch.empty((B, T, h, w, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3),
                "clip2": torch.empty((B, T, h, w, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3),
                **{k: torch.empty(B, dtype=torch.long) for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t", "label")},
                "video_id": [], "idx1": torch.empty((B, T), dtype=torch.long), "idx2": torch.empty((B, T), dtype=torch.long)}

    def fill(self, batch: dict, i: int, row: int, p: PairSample, frames: dict[int, bytes]) -> None:
        """Write video ``row``'s clip pair into slot ``i`` of ``batch`` (see DESIGN's batch contract)."""
        cfg = self.cfg
        needed = np.union1d(p.idx1, p.idx2)
        decoded = decode_jpegs([frames[int(f)] for f in needed])
        rots = cfg.pair.rotations
        clip_from_frames(decoded, np.searchsorted(needed, p.idx1), p.box1, rots[p.rot1], cfg.out_size, batch["clip1"][i])
        clip_from_frames(decoded, np.searchsorted(needed, p.idx2), p.box2, rots[p.rot2], cfg.out_size, batch["clip2"][i])
        for k, v in (("rate", p.rate), ("rot1", p.rot1), ("rot2", p.rot2), ("overlap_s", p.overlap_s),
                     ("overlap_t", p.overlap_t), ("label", int(self.index.label[row]))):
            batch[k][i] = v
        batch["idx1"][i] = torch.from_numpy(p.idx1)
        batch["idx2"][i] = torch.from_numpy(p.idx2)
        batch["video_id"].append(str(self.index.video_id[row]))

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        if n_workers != self.num_workers:
            raise RuntimeError(f"ClipPairStream was planned for {self.num_workers} workers but runs in "
                               f"{n_workers}: pass num_workers= to both")
        epoch = self.epoch
        plan = self.plan(epoch)
        skips, first = resume_point(plan.quotas[self.rank], self.resume_delivered)
        worker = (first + worker) % n_workers          # the role this slot plays (see resume_point)
        quota, skip = plan.quotas[self.rank][worker], skips[worker]
        B = self.cfg.batch_size
        produced = 0
        filled = 0
        batch = None
        for row, pair, frames in self._passes(plan.shards[self.rank][worker], epoch, worker):
            if produced >= quota:
                break
            if produced < skip:
                # pass over without decoding: the batches an interrupted run already delivered
                filled += 1
                if filled == B:
                    produced, filled = produced + 1, 0
                continue
            if batch is None:
                batch = self.new_batch()
            self.fill(batch, filled, row, pair, frames)
            filled += 1
            if filled == B:
                produced, filled = produced + 1, 0
                yield batch
                batch = None
        if produced < quota:
            raise ShardDataError(f"rank {self.rank} worker {worker} produced {produced} of its {quota} batches "
                                 f"in epoch {epoch}; errors: {self.errors[:3]}")

    def _passes(self, shard_numbers: list[int], epoch: int, worker: int, max_passes: int = 3) -> Iterator:
        """The worker's samples, shuffled. With ``skip_errors`` a broken shard can leave a worker short
        of its quota; it then reads its shards again (another shuffle) rather than stall the ranks."""
        for p in range(max_passes if self.cfg.skip_errors else 1):
            rng = random.Random(f"{self.cfg.seed}-{epoch}-{self.rank}-{worker}-{p}")
            n = 0
            for item in self._shuffled(self._samples(shard_numbers, epoch), rng):
                n += 1
                yield item
            if n == 0:
                return


class PairLoader:
    """DataLoader over a ClipPairStream that counts delivered batches, so it can be resumed."""

    def __init__(self, cfg: StreamConfig, num_workers: int = 0, rank: int | None = None,
                 world_size: int | None = None, pin_memory: bool | None = None):
        self.dataset = ClipPairStream(cfg, num_workers=num_workers, rank=rank, world_size=world_size)
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.epoch = 0
        self.delivered = 0

    def __len__(self) -> int:
        return self.dataset.batches_per_epoch(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.delivered = epoch, 0

    def epoch_summary(self) -> dict:
        """What the log records per epoch: videos in the split, videos delivered, samples skipped."""
        ds = self.dataset
        return {"videos_in_split": len(ds.rows), "videos_delivered": len(self) * ds.cfg.batch_size,
                "samples_skipped": len(ds.errors)}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "delivered": self.delivered, "seed": self.dataset.cfg.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.dataset.cfg.seed) != self.dataset.cfg.seed:
            raise ValueError(f"loader state is for seed {state['seed']}, this loader has {self.dataset.cfg.seed}")
        self.epoch, self.delivered = int(state["epoch"]), int(state["delivered"])

    def __iter__(self) -> Iterator[dict]:
        self.dataset.set_epoch(self.epoch, self.delivered)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                                             pin_memory=self.pin_memory, persistent_workers=False)
        total = len(self)
        for batch in loader:
            self.delivered += 1
            yield batch
        if self.delivered != total:
            raise ShardDataError(f"epoch {self.epoch} delivered {self.delivered} of {total} batches")
        self.epoch += 1
        self.delivered = 0
