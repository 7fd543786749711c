"""Pieces the linear probe and fine-tuning share: split rows, a validation carve-out, video accuracy."""
from __future__ import annotations

import math

import numpy as np
import torch

from shards.errors import InputError
from shards.format import SPLIT_TEST, SPLIT_TRAIN


def split_rows(index, split: str, flag: str = "--splits") -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of ``split``; an error naming the splits that would work when either is empty."""
    names = [str(s) for s in index.attrs["splits"]]
    usable = [s for s in names if len(index.select(s, SPLIT_TRAIN)) and len(index.select(s, SPLIT_TEST))]
    hint = f"use {flag} {','.join(usable)}" if usable else "no split of these shards has both"
    if str(split) not in names:
        raise InputError(f"split {split!r} is not in these shards (they have {', '.join(names)}); {hint}")
    train, test = index.select(split, SPLIT_TRAIN), index.select(split, SPLIT_TEST)
    for role, rows in (("test", test), ("train", train)):
        if len(rows) == 0:
            raise InputError(f"split {split} has no {role} videos in these shards; {hint}")
    return train, test


def carve_validation(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): about ``fraction`` of each class's train videos held out for model
    selection, so the test split is never used to choose anything."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = rows[labels == c]
        n = int(round(len(members) * fraction))
        if n and len(members) > 1:
            val.extend(rng.choice(members, size=min(n, len(members) - 1), replace=False).tolist())
    val_set = set(val)
    return np.array([r for r in rows if r not in val_set], dtype=rows.dtype), np.array(sorted(val_set), dtype=rows.dtype)


def validation_split(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`carve_validation`, or an error saying which ``--val-fraction`` would leave a validation part."""
    if not 0 <= fraction < 1:
        raise InputError(f"--val-fraction {fraction} must be at least 0 and below 1; use e.g. --val-fraction 0.1")
    if fraction == 0:
        raise InputError("no validation videos: --val-fraction 0 leaves none; use e.g. --val-fraction 0.1")
    train, val = carve_validation(rows, labels, fraction, seed)
    if len(val) == 0:
        largest = int(np.bincount(labels).max()) if len(labels) else 0
        if largest < 2:
            raise InputError(f"no validation videos: no class has more than 1 of the {len(rows)} train videos, "
                             "and each class keeps one for training; shards with 2 or more train videos in a class are needed")
        need = math.floor(100 * 0.5 / largest) / 100 + 0.01     # round(largest * need) >= 1, half-even included
        raise InputError(f"no validation videos: --val-fraction {fraction} of at most {largest} train videos per "
                         f"class rounds to none; use --val-fraction {need:g} or more")
    return train, val


def video_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 and top-5 of videos from [V, clips, C] clip logits, averaged over each video's clips."""
    mean = logits.float().mean(dim=1)
    top = mean.topk(min(5, mean.shape[1]), dim=1).indices
    hit = top == labels.view(-1, 1)
    return {"top1": float(hit[:, 0].float().mean()), "top5": float(hit.any(dim=1).float().mean())}
