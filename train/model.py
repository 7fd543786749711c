"""The CSTP model: a backbone, a contrastive method and the pretext heads (train.pretext), with the
paper's eq. 5 loss as the authors sum it (main_byol.py): L = w_ctr L_ctr + sum over the pretext
tasks of w_task L_task (a per-clip task's L summed over both clips), each weight a ``loss.<term>``
key (0 switches the term off and drops its head)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbones import build_backbone
from .heads import PretextHeads
from .methods import build_method
from .pretext import enabled


def total_loss(losses: dict, weights) -> torch.Tensor:
    """sum_k weights.<k> * losses[k] over the terms present (the term's name is its weight's key)."""
    return sum(getattr(weights, k) * v for k, v in losses.items())


class CSTPModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        m = cfg.model
        self.weights = cfg.loss
        backbone = build_backbone(m.backbone, m.width, m.init)
        self.method = build_method(m.method, backbone, **m.method_params)
        self.heads = PretextHeads(enabled(cfg), backbone, backbone.feature_dim, cfg)

    @property
    def backbone(self):
        return self.method.backbone

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        ctr, h1, h2 = self.method(x1, x2)
        parts, accs = self.heads(h1.float(), h2.float(), batch)
        losses = {"contrastive": ctr, **parts}
        # weight 0 keeps the projector in the graph (DDP expects a gradient for every parameter)
        return total_loss(losses, self.weights), losses, accs
