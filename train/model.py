"""The CSTP model: a backbone, a contrastive method and the pretext heads, with the paper's eq. 5
loss as the authors sum it (main_byol.py): L = w_ctr L_ctr + w_s L_s + w_t L_t + w_p (L_p1 + L_p2)
+ w_r (L_r1 + L_r2), each weight a ``loss.*`` key (0 switches the term off and drops its head)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbones import build_backbone
from .heads import PretextHeads
from .methods import build_method

# the entries CSTPModel.forward returns (the log's loss_<name>, acc_<name>) -> their weight's key
TERM_WEIGHTS = {"contrastive": "contrastive", "rate": "rate", "rotation": "rotation",
                "overlap_s": "overlap_spatial", "overlap_t": "overlap_temporal"}


def total_loss(losses: dict, weights: dict) -> torch.Tensor:
    """sum_k weights[TERM_WEIGHTS[k]] * losses[k] over the terms present."""
    return sum(weights[TERM_WEIGHTS[k]] * v for k, v in losses.items())


class CSTPModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        m, l, d = cfg["model"], cfg["loss"], cfg["data"]
        self.weights = l
        backbone = build_backbone(m["backbone"], m["width"], m.get("init", "authors"))    # older configs lack init
        self.method = build_method(m["method"], backbone, **m["method_params"])
        self.heads = PretextHeads(
            backbone.feature_dim, len(d["rates"]), len(d["rotations"]), d["n_overlaps"], d["n_overlaps"],
            rate=l["rate"] > 0, rotation=l["rotation"] > 0,
            spatial=l["overlap_spatial"] > 0, temporal=l["overlap_temporal"] > 0)

    @property
    def backbone(self):
        return self.method.backbone

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        ctr, h1, h2 = self.method(x1, x2)
        parts, accs = self.heads(h1.float(), h2.float(), batch)
        losses = {"contrastive": ctr, **parts}
        # weight 0 keeps the projector in the graph (DDP expects a gradient for every parameter)
        return total_loss(losses, self.weights), losses, accs
