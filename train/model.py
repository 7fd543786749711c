"""The CSTP model: a backbone, a contrastive method and the pretext heads, with the paper's eq. 5
loss L = l_ctr L_ctr + l_p L_p + l_r L_r + l_o L_o (L_o the mean of the enabled overlap terms)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbones import build_backbone
from .heads import PretextHeads
from .methods import build_method


class CSTPModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        m, l, d = cfg["model"], cfg["loss"], cfg["data"]
        self.weights = l
        backbone = build_backbone(m["backbone"], m["width"])
        self.method = build_method(m["method"], backbone, **m["method_params"])
        self.heads = PretextHeads(
            backbone.feature_dim, len(d["rates"]), len(d["rotations"]), d["n_overlaps"], d["n_overlaps"],
            rate=l["rate"] > 0, rotation=l["rotation"] > 0,
            spatial=l["overlap"] > 0 and l["overlap_spatial"], temporal=l["overlap"] > 0 and l["overlap_temporal"])

    @property
    def backbone(self):
        return self.method.backbone

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        w = self.weights
        ctr, h1, h2 = self.method(x1, x2)
        parts, accs = self.heads(h1.float(), h2.float(), batch)
        losses = {"contrastive": ctr, **parts}
        total = w["contrastive"] * ctr if w["contrastive"] > 0 else 0.0 * ctr
        if "rate" in parts:
            total = total + w["rate"] * parts["rate"]
        if "rotation" in parts:
            total = total + w["rotation"] * parts["rotation"]
        overlap = [parts[k] for k in ("overlap_s", "overlap_t") if k in parts]
        if overlap:
            total = total + w["overlap"] * torch.stack(overlap).mean()
        return total, losses, accs
