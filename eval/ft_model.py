"""The fine-tuning model: a backbone and the authors' classifier (R21DBYOL with cls_bn: the pooled
feature L2-normalised, then BatchNorm1d, then Linear), each part a switch of finetune.head; and the
frozen backbone of linear evaluation (the paper's Table 6 "Freeze" rows, the authors' ft_fc)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from eval.ft_config import FinetuneConfig


@torch.no_grad()
def glorot_uniform_(t: torch.Tensor) -> torch.Tensor:
    """The authors' _glorot_uniform: U(+-sqrt(6 / (fan_in + fan_out))); a vector of n counts n/2 in and out."""
    fan_in, fan_out = (t.shape[1], t.shape[0]) if t.dim() >= 2 else (t.shape[0] // 2, t.shape[0] // 2)
    if t.dim() > 2:
        fan_in, fan_out = fan_in * t[0][0].numel(), fan_out * t[0][0].numel()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return t.uniform_(-bound, bound)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int, cfg: FinetuneConfig):
        super().__init__()
        h, dim = cfg.head, backbone.feature_dim
        self.backbone = backbone
        self.l2 = h.l2
        self.bn = nn.BatchNorm1d(dim) if h.bn else nn.Identity()
        self.drop = nn.Dropout(h.dropout) if h.dropout else nn.Identity()
        self.fc = nn.Linear(dim, n_classes)
        if h.init == "authors":
            glorot_uniform_(self.fc.weight)
            if h.bn:
                glorot_uniform_(self.bn.weight)

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        if self.l2:
            f = F.normalize(f, p=2, dim=1)
        return self.fc(self.drop(self.bn(f)))


def build(backbone: nn.Module, n_classes: int, cfg: FinetuneConfig, frozen: bool) -> Classifier:
    """The classifier; with ``frozen`` the backbone's weights take no gradient (linear evaluation)."""
    model = Classifier(backbone, n_classes, cfg)
    if frozen:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return model


def trainable(model: Classifier, frozen: bool) -> list:
    return model.head_parameters() if frozen else list(model.parameters())


def train_mode(model: Classifier, frozen: bool, cfg: FinetuneConfig) -> None:
    """Training mode; a frozen backbone's batch norm as finetune.frozen.bn says."""
    model.train()
    if frozen and cfg.frozen.bn == "eval":
        model.backbone.eval()
