"""The pretext heads: one a task the config trains (train.pretext), each the backbone's own pretext
head where it has one (``make_head``), else the authors' MLP (models/pace/r21d_byol.py: two layers
with batch norm, hidden width its input's). Per-clip tasks sit on one clip's backbone feature, pair
tasks on the two clips' features concatenated.
"""
from __future__ import annotations

import torch
import torch.nn as nn


# What a pair task's head sees of the two clips' features h1, h2 [B, D] (model.pair_input): the
# paper's concatenation, or with their |difference| and product beside it (a one-hidden-layer head on
# the concatenation has to learn the comparison itself; README, "Does STOR learn?").
PAIR_INPUTS = {
    "cat": (2, lambda h1, h2: torch.cat([h1, h2], dim=1)),
    "compare": (4, lambda h1, h2: torch.cat([h1, h2, (h1 - h2).abs(), h1 * h2], dim=1)),
}


def mlp_head(dim: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, n_classes))


class PretextHeads(nn.ModuleDict):
    """{task name: head} for the given tasks; calling it gives each task's (loss, accuracy)."""

    def __init__(self, tasks: list, backbone: nn.Module, feature_dim: int, cfg):
        super().__init__({t.name: t.build_head(backbone, feature_dim, cfg) for t in tasks})
        self.tasks = {t.name: t for t in tasks}

    def forward(self, h1: torch.Tensor, h2: torch.Tensor, batch: dict) -> tuple[dict, dict]:
        """(losses, accuracies) by task name; labels from the batch's pair geometry."""
        losses, accs = {}, {}
        for name, task in self.tasks.items():
            losses[name], accs[name] = task.loss(self[name], h1, h2, batch)
        return losses, accs
