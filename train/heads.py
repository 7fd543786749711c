"""CSTP's pretext heads: playback rate and rotation per clip, spatial and temporal overlap per pair
(on the two clips' backbone features concatenated)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import accuracy


class PretextHeads(nn.Module):
    def __init__(self, dim: int, n_rates: int, n_rotations: int, n_spatial: int, n_temporal: int,
                 rate: bool = True, rotation: bool = True, spatial: bool = True, temporal: bool = True):
        super().__init__()
        self.rate = nn.Linear(dim, n_rates) if rate else None
        self.rotation = nn.Linear(dim, n_rotations) if rotation else None
        self.spatial = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, n_spatial)) if spatial else None
        self.temporal = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, n_temporal)) if temporal else None

    def forward(self, h1: torch.Tensor, h2: torch.Tensor, batch: dict) -> tuple[dict, dict]:
        """(losses, accuracies) of the enabled heads; labels from the loader's batch."""
        losses, accs = {}, {}
        both = torch.cat([h1, h2])
        if self.rate is not None:
            target = torch.cat([batch["rate"], batch["rate"]])      # both clips play at the pair's rate
            logits = self.rate(both)
            losses["rate"], accs["rate"] = F.cross_entropy(logits, target), accuracy(logits, target)
        if self.rotation is not None:
            target = torch.cat([batch["rot1"], batch["rot2"]])
            logits = self.rotation(both)
            losses["rotation"], accs["rotation"] = F.cross_entropy(logits, target), accuracy(logits, target)
        pair = torch.cat([h1, h2], dim=1)
        for name, head, key in (("overlap_s", self.spatial, "overlap_s"), ("overlap_t", self.temporal, "overlap_t")):
            if head is not None:
                logits = head(pair)
                losses[name], accs[name] = F.cross_entropy(logits, batch[key]), accuracy(logits, batch[key])
        return losses, accs
