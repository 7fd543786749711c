"""Pieces the linear probe and fine-tuning share: split rows, a validation carve-out, video accuracy."""
from __future__ import annotations

import numpy as np
import torch

from shards.format import SPLIT_TEST, SPLIT_TRAIN


def split_rows(index, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of ``split``; a clear error when either is empty."""
    train, test = index.select(split, SPLIT_TRAIN), index.select(split, SPLIT_TEST)
    if len(test) == 0:
        raise ValueError(f"split {split} has no test videos in these shards")
    if len(train) == 0:
        raise ValueError(f"split {split} has no train videos in these shards")
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


def video_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 and top-5 of videos from [V, clips, C] clip logits, averaged over each video's clips."""
    mean = logits.float().mean(dim=1)
    top = mean.topk(min(5, mean.shape[1]), dim=1).indices
    hit = top == labels.view(-1, 1)
    return {"top1": float(hit[:, 0].float().mean()), "top5": float(hit.any(dim=1).float().mean())}
