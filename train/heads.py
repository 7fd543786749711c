"""CSTP's pretext heads as the authors build them (models/pace/r21d_byol.py): playback rate and
rotation per clip on the clip's backbone feature, spatial and temporal overlap per pair on the two
clips' features concatenated; each head a two-layer MLP with batch norm (hidden width: its input's).

The per-clip terms are summed over the two clips, as the authors sum ``pb_1 + pb_2`` and
``rot_1 + rot_2`` in their total loss; accuracies are over both clips.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import accuracy


def head(dim: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, n_classes))


class PretextHeads(nn.Module):
    def __init__(self, dim: int, n_rates: int, n_rotations: int, n_spatial: int, n_temporal: int,
                 rate: bool = True, rotation: bool = True, spatial: bool = True, temporal: bool = True):
        super().__init__()
        self.rate = head(dim, n_rates) if rate else None
        self.rotation = head(dim, n_rotations) if rotation else None
        self.spatial = head(2 * dim, n_spatial) if spatial else None
        self.temporal = head(2 * dim, n_temporal) if temporal else None

    def forward(self, h1: torch.Tensor, h2: torch.Tensor, batch: dict) -> tuple[dict, dict]:
        """(losses, accuracies) of the enabled heads; labels from the loader's batch."""
        losses, accs = {}, {}
        b = h1.shape[0]
        both = torch.cat([h1, h2])
        per_clip = (("rate", self.rate, batch["rate"], batch["rate"]),      # both clips play at the pair's rate
                    ("rotation", self.rotation, batch["rot1"], batch["rot2"]))
        for name, net, t1, t2 in per_clip:
            if net is not None:
                logits, target = net(both), torch.cat([t1, t2])
                losses[name] = F.cross_entropy(logits[:b], t1) + F.cross_entropy(logits[b:], t2)
                accs[name] = accuracy(logits, target)
        pair = torch.cat([h1, h2], dim=1)
        for name, net in (("overlap_s", self.spatial), ("overlap_t", self.temporal)):
            if net is not None:
                logits = net(pair)
                losses[name], accs[name] = F.cross_entropy(logits, batch[name]), accuracy(logits, batch[name])
        return losses, accs
