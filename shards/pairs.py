"""Clip pairs from JPEG frames, and batches of them (the batch contract in the README's "Stage 2: shards").

A video's clip pair is drawn from a generator seeded by (seed, epoch, video key): it does not depend
on which rank or worker reads the video, or when. Clips leave the loader unrotated; ``rot1`` and
``rot2`` are labels the device applies (shards.augment.augment_pair), after its flip.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .clips import clip_from_frames
from .sampling import PairConfig, PairSample, sample_pair

LABELS = ("rate", "rot1", "rot2", "overlap_s", "overlap_t", "label")


def draw(seed: int, epoch: int, key: str, n_frames: int, height: int, width: int, cfg: PairConfig) -> PairSample:
    rng = np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])
    return sample_pair(n_frames, height, width, cfg, rng)


def needed_frames(p: PairSample) -> np.ndarray:
    return np.union1d(p.idx1, p.idx2)


def new_batch(batch_size: int, clip_len: int, out_size: tuple[int, int]) -> dict:
    B, T, (h, w) = batch_size, clip_len, out_size
    # B x 3 x T x H x W views of B x T x H x W x 3 storage: the resized frames come out of torch's
    # fast uint8 kernel channels-last, so writing them is a plain copy, not a transposition.
    # (Consumers see the contract's shape; .contiguous() gives the dense layout where needed.)
    return {"clip1": torch.empty((B, T, h, w, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3),
            "clip2": torch.empty((B, T, h, w, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3),
            **{k: torch.empty(B, dtype=torch.long) for k in LABELS},
            "video_id": [], "idx1": torch.empty((B, T), dtype=torch.long), "idx2": torch.empty((B, T), dtype=torch.long)}


def fill(batch: dict, i: int, p: PairSample, needed: np.ndarray, decoded: np.ndarray, label: int,
         video_id: str, out_size: tuple[int, int]) -> None:
    """Write one video's clip pair into slot ``i`` of ``batch``."""
    clip_from_frames(decoded, np.searchsorted(needed, p.idx1), p.box1, 0, out_size, batch["clip1"][i])
    clip_from_frames(decoded, np.searchsorted(needed, p.idx2), p.box2, 0, out_size, batch["clip2"][i])
    for k, v in zip(LABELS, (p.rate, p.rot1, p.rot2, p.overlap_s, p.overlap_t, label)):
        batch[k][i] = v
    batch["idx1"][i] = torch.from_numpy(p.idx1)
    batch["idx2"][i] = torch.from_numpy(p.idx2)
    batch["video_id"].append(video_id)
