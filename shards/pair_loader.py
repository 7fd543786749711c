"""PairLoader: a resumable DataLoader with persistent workers over a ClipPairStream (shards.loader),
and, with ``data.decode: gpu``, the device decoding stage its batches pass through."""
from __future__ import annotations

from typing import Iterator

import torch

from .decoders import make_decoder
from .decode_torch import DeviceStage
from .loader import PREFETCH, ClipPairStream, StreamConfig, _WorkerFailure
from .readers import ShardDataError


class PairLoader:
    """A DataLoader over a ClipPairStream with persistent workers, counting delivered batches so it
    can be resumed mid-epoch."""

    def __init__(self, cfg: StreamConfig, num_workers: int = 0, rank: int | None = None,
                 world_size: int | None = None, pin_memory: bool | None = None, device=None,
                 lend_batches: bool = False):
        """``lend_batches``: without pinning, hand out the workers' shared-memory batches themselves,
        each valid until the next one is asked for (a training loop's use), instead of a copy that
        may be kept (``list(loader)``). Pinned batches are always copies (into pinned memory)."""
        decoder = make_decoder(cfg.decode, device)      # data.decode=gpu without CUDA: refused here
        self.dataset = ClipPairStream(cfg, num_workers=num_workers, rank=rank, world_size=world_size)
        d = self.dataset
        self.stage = None if cfg.decode == "cpu" else DeviceStage(decoder, cfg.out_size, d.height, d.width)
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.lend = lend_batches and not self.pin_memory
        self.epoch = 0
        self.delivered = 0
        self._loader = None
        self._videos: set[str] = set()

    def __len__(self) -> int:
        return self.dataset.batches

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.delivered = epoch, 0

    def epoch_summary(self) -> dict:
        """The latest epoch on this rank: videos in the split (all ranks), distinct videos this rank
        delivered, samples its workers skipped (skip_errors)."""
        return {"videos_in_split": len(self.dataset.selected), "videos_delivered": len(self._videos),
                "samples_skipped": self.dataset.skipped()}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "delivered": self.delivered, "seed": self.dataset.cfg.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.dataset.cfg.seed) != self.dataset.cfg.seed:
            raise ValueError(f"loader state is for seed {state['seed']}, this loader has {self.dataset.cfg.seed}")
        self.epoch, self.delivered = int(state["epoch"]), int(state["delivered"])

    def _source(self):
        if not self.num_workers:
            return iter(self.dataset)
        if self._loader is None:
            if self.stage is None:      # JPEG bytes (gpu decoding) vary in size: they travel pickled
                self.dataset.make_ring()
            # pinning happens in _owned: the workers send slot numbers, not tensors
            self._loader = torch.utils.data.DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                                                       persistent_workers=True, prefetch_factor=PREFETCH)
        return iter(self._loader)

    def _owned(self, batch: dict) -> tuple[dict, tuple[int, int] | None]:
        """(the batch, the ring slot to release once the consumer asks for the next one, or None).
        A worker's batch is copied out of its ring slot here (pinned when pinning), and the slot
        released at once, unless batches are lent; a batch made in this process is its own."""
        ring = batch.get("ring")
        if ring is not None:
            batch = {**self.dataset.ring[ring[0]][ring[1]], "video_id": batch["video_id"]}
            if self.lend:
                return batch, ring
        elif not self.pin_memory:
            return batch, None
        owned = {key: torch.empty_like(v, pin_memory=self.pin_memory).copy_(v) if isinstance(v, torch.Tensor) else v
                 for key, v in batch.items()}
        if ring is not None:
            self.dataset.release(*ring)
        return owned, None

    def __iter__(self) -> Iterator[dict]:
        if self.delivered == 0:
            self._videos = set()
            self.dataset.reset_skipped()
        self.dataset.set_epoch(self.epoch, self.delivered)
        for batch in self._source():
            if isinstance(batch, _WorkerFailure):
                raise batch.exc
            batch, lent = self._owned(batch) if self.stage is None else (self.stage(batch), None)
            self.delivered += 1
            self._videos.update(batch["video_id"])
            yield batch
            if lent is not None:     # the consumer asked for the next batch: it is done with this one
                self.dataset.release(*lent)
        if self.delivered != len(self):
            raise ShardDataError(f"epoch {self.epoch} delivered {self.delivered} of {len(self)} batches")
        self.epoch += 1
        self.delivered = 0
