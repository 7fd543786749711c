"""Which videos each rank and DataLoader worker delivers in an epoch: pure functions of (seed, epoch).

Order. Local shards are read by byte offset, so an epoch's videos are one (seed, epoch) permutation
of all of them. Streamed shards are read front to back, so their order is the shards in a (seed,
epoch) permutation, each shard's videos in tar order; the reader's shuffle buffer mixes them.

Dealing. The order is cut into P = floor(N / (B * world)) batches per rank: rank r takes the r-th
contiguous slice of P * B videos, and its workers take contiguous runs of it, worker w the batches
w, w + K, w + 2K, ... of the rank (the DataLoader hands batches out round-robin, so the rank's i-th
batch is worker i % K's). Quotas differ by at most one batch; every rank yields P batches; a
streamed shard is read by one worker, or two at a run's boundary.

Remainder. The N - P * B * world videos (fewer than one global batch) that do not fit are carried:
they open the next epoch's order, so no video waits more than one epoch and none is delivered twice
in an epoch. The carry makes epoch e depend on epochs before it; it is recomputed from epoch 0
(cached), so it still depends only on (seed, epoch).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import InputError
from .format import SPLIT_ROLE_NAMES, STATUS_OK


class SetTooSmall(InputError, ValueError):
    """Fewer usable videos than one global batch."""


def batches_per_rank(n_videos: int, batch_size: int, world_size: int, where: str = "",
                     advice: Callable[[int], tuple[str, str]] | None = None) -> int:
    """Batches each rank delivers per epoch; ``advice(global batch)`` gives (what the selection
    is, the other choices that would work) for the message when there is not one batch."""
    global_batch = batch_size * world_size
    if n_videos < global_batch:
        what, others = advice(global_batch) if advice is not None else ("", "")
        raise SetTooSmall(
            f"{where}{what}{n_videos} usable videos are fewer than one global batch of {global_batch} "
            f"(data.batch_size {batch_size} x world size {world_size}): lower data.batch_size or run on "
            f"fewer ranks{others} (data.num_workers does not matter: workers share their rank's batches)")
    return n_videos // global_batch


def split_advice(index, split: str | None, role: int, min_frames: int) -> Callable[[int], tuple[str, str]]:
    """For the too-small message: the split's usable videos by role (status ok and long enough for
    a clip pair), and the ``data.split`` values whose ``role`` part holds at least one global batch."""

    def advise(global_batch: int) -> tuple[str, str]:
        usable = (index.status == STATUS_OK) & (index.n_frames >= min_frames)
        role_name = SPLIT_ROLE_NAMES.get(role, str(role))
        enough = []
        for c, name in enumerate(str(s) for s in index.attrs["splits"]):
            n = int((usable & (index.split[:, c] == role)).sum())
            if n >= global_batch and name != str(split):
                enough.append(f"data.split={name} ({n} {role_name} videos)")
        n_all = int(usable.sum())
        if split is not None and n_all >= global_batch:
            enough.append(f"data.split=all ({n_all} videos)")
        if split is None:
            what = f"data.split=all (every video; {n_all} usable): "
        else:
            col = index.split[usable, index.split_column(split)]
            counts = ", ".join(f"{int((col == c).sum())} {SPLIT_ROLE_NAMES.get(int(c), str(c))}"
                               for c in sorted(set(col.tolist()) | {role}))
            what = f"data.split={split} ({counts} usable videos; training takes the {role_name} part): "
        others = (", or choose " + " or ".join(enough)) if enough else (
            f"; no data.split has enough ({n_all} usable videos in the whole set)" if split is not None else "")
        return what, others
    return advise


def shuffled_order(rows: np.ndarray, shard: np.ndarray, seed: int, epoch: int, whole_shards: bool) -> np.ndarray:
    """``rows`` (in tar order) in the epoch's order; ``shard[i]`` is the shard of ``rows[i]``."""
    rng = np.random.default_rng([seed, epoch])
    if not whole_shards:
        return rows[rng.permutation(len(rows))]
    shards = np.unique(shard)
    rank = np.empty(int(shards.max()) + 1 if len(shards) else 0, np.int64)
    rank[shards[rng.permutation(len(shards))]] = np.arange(len(shards))
    return rows[np.lexsort((np.arange(len(rows)), rank[shard]))]


class EpochOrder:
    """The videos delivered in each epoch, with the remainder carried into the next."""
    def __init__(self, rows: np.ndarray, shard: np.ndarray, seed: int, per_epoch: int, whole_shards: bool):
        self.rows, self.shard, self.seed = np.asarray(rows), np.asarray(shard), seed
        self.per_epoch, self.whole_shards = per_epoch, whole_shards
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None   # (epoch, delivered, carried)

    def delivered(self, epoch: int) -> np.ndarray:
        """The ``per_epoch`` rows epoch ``epoch`` delivers, in order: last epoch's carry first."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        start, carried = 0, self.rows[:0]
        if self._cache is not None and self._cache[0] < epoch:
            start, carried = self._cache[0] + 1, self._cache[2]
        for e in range(start, epoch + 1):
            base = shuffled_order(self.rows, self.shard, self.seed, e, self.whole_shards)
            order = np.concatenate([carried, base[~np.isin(base, carried)]])
            self._cache = (e, order[:self.per_epoch], order[self.per_epoch:])
            carried = self._cache[2]
        return self._cache[1]


def worker_quotas(batches: int, num_workers: int) -> list[int]:
    """Batches of each worker of a rank: worker w has the rank's batches w, w + K, ..."""
    return [batches // num_workers + (w < batches % num_workers) for w in range(num_workers)]


def worker_rows(delivered: np.ndarray, rank: int, worker: int, batch_size: int, num_workers: int,
                batches: int) -> np.ndarray:
    """The rows worker ``worker`` of rank ``rank`` reads, in reading order (a contiguous run)."""
    quotas = worker_quotas(batches, num_workers)
    start = rank * batches * batch_size + sum(quotas[:worker]) * batch_size
    return delivered[start:start + quotas[worker] * batch_size]


def role_of(slot: int, num_workers: int, delivered: int) -> int:
    """The worker a DataLoader slot plays once ``delivered`` batches of the epoch are out.

    A new DataLoader asks slot 0 first; the batch due next is worker (delivered % K)'s, so slot j
    plays worker (delivered + j) % K and the round-robin continues where it stopped.
    """
    return (delivered + slot) % num_workers


def batches_done(worker: int, num_workers: int, delivered: int) -> int:
    """Batches worker ``worker`` had produced when the rank had delivered ``delivered``."""
    return max(0, -(-(delivered - worker) // num_workers))
