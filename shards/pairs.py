"""Clip pairs from JPEG frames, and batches of them (the batch contract in the README's "Stage 2: shards").

A video's clip pair is drawn from a generator seeded by (seed, epoch, video key): it does not depend
on which rank or worker reads the video, or when. Clips leave the loader unrotated; ``rot1`` and
``rot2`` are labels the device applies (train.augment.augment_pair), after its flip.

A batch carries the pair's whole geometry, every field of :class:`PairSample` under its own name
(candidate indices B, frame indices B x T, crop boxes B x 4), and the video's class ``label``; the
pretext tasks (train.pretext) draw their labels from it, so this module names none of them.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch

from .clips import clip_from_frames
from .sampling import PairConfig, PairSample, sample_pair

# PairSample's fields by shape: one index a pair, one frame index a clip frame, one box a crop
INDICES = tuple(f.name for f in dataclasses.fields(PairSample) if f.type in (int, "int"))
FRAMES = ("idx1", "idx2")
BOXES = ("box1", "box2")
if set(INDICES + FRAMES + BOXES) != {f.name for f in dataclasses.fields(PairSample)}:
    raise TypeError("a field of PairSample has no slot in the batch (shards/pairs.py)")


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
            **geometry_slots(B, T)}


def geometry(samples: list[PairSample]) -> dict[str, torch.Tensor]:
    """The geometry part of a batch of ``samples``, as the loader fills it (for batches made without frames)."""
    return {**{k: torch.tensor([getattr(p, k) for p in samples], dtype=torch.long) for k in INDICES + BOXES},
            **{k: torch.from_numpy(np.stack([getattr(p, k) for p in samples])).long() for k in FRAMES}}


def fill(batch: dict, i: int, p: PairSample, needed: np.ndarray, decoded: np.ndarray, label: int,
         video_id: str, out_size: tuple[int, int]) -> None:
    """Write one video's clip pair into slot ``i`` of ``batch``."""
    clip_from_frames(decoded, np.searchsorted(needed, p.idx1), p.box1, 0, out_size, batch["clip1"][i])
    clip_from_frames(decoded, np.searchsorted(needed, p.idx2), p.box2, 0, out_size, batch["clip2"][i])
    put_geometry(batch, i, p, label, video_id)


def geometry_slots(batch_size: int, clip_len: int) -> dict:
    """A batch's geometry part, empty: every PairSample field, the class label and the video ids."""
    B, T = batch_size, clip_len
    return {**{k: torch.empty(B, dtype=torch.long) for k in (*INDICES, "label")},
            **{k: torch.empty((B, T), dtype=torch.long) for k in FRAMES},
            **{k: torch.empty((B, 4), dtype=torch.long) for k in BOXES}, "video_id": []}


def put_geometry(batch: dict, i: int, p: PairSample, label: int, video_id: str) -> None:
    """Write one pair's geometry, its video's class and id into slot ``i`` of ``batch``. Through
    numpy views of the (CPU) tensors: a torch item assignment costs a few us, a dozen per pair."""
    for k in INDICES:
        batch[k].numpy()[i] = getattr(p, k)
    for k in FRAMES + BOXES:
        batch[k].numpy()[i] = getattr(p, k)
    batch["label"].numpy()[i] = label
    batch["video_id"].append(video_id)
