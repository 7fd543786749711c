"""S3D-G as the CSTP authors build it (their models/coclr/s3dg.py ``S3D`` with gating=True,
slow=False, from CoCLR): separable 3-D convs (a (1, k, k) then a (k, 1, 1) conv, each with BN and
ReLU, both ``out`` wide), a stem with stride 2 in time and space, Inception blocks whose four branches
are each gated (Xie et al., 2018: the branch's channels scaled by a sigmoid of a Linear of their
spatio-temporal mean) before they are concatenated, and PyTorch's default batch-norm settings
(eps 1e-5, momentum 0.1; the TensorFlow S3D's 1e-3 / 0.001 are commented out in theirs). 1024-d
feature; 9,098,000 parameters at width 1. The layers are torchvision's S3D blocks with that norm.

With S3D-G the authors' BYOL projects 1024-1024-1024 and predicts 1024-4096-1024; its pretext heads
are MLPs with batch norm, as R(2+1)D's.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.video.s3d import SepInceptionBlock3D, TemporalSeparableConv
from torchvision.ops.misc import Conv3dNormActivation

from .base import Backbone, channels, mlp_head, register

NORM = nn.BatchNorm3d


class SelfGating(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        g = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * g[:, :, None, None, None]


class GatedInception(nn.Module):
    """torchvision's separable Inception block with a gate on each branch before the concatenation."""

    def __init__(self, c_in: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int):
        super().__init__()
        self.block = SepInceptionBlock3D(c_in, b0, b1_mid, b1, b2_mid, b2, b3, NORM)
        self.gates = nn.ModuleList(SelfGating(c) for c in (b0, b1, b2, b3))
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x):
        b = self.block
        branches = (b.branch0, b.branch1, b.branch2, b.branch3)
        return torch.cat([g(f(x)) for f, g in zip(branches, self.gates)], dim=1)


# (in, b0, b1_mid, b1, b2_mid, b2, b3) of Mixed_3b..Mixed_5c, with the max-pools between them
MIXED = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "pool_4a",
         (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
         (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), "pool_5a",
         (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]
POOLS = {"pool_4a": lambda: nn.MaxPool3d(3, 2, 1), "pool_5a": lambda: nn.MaxPool3d(2, 2)}


@register("s3dg")
class S3DG(Backbone):
    METHOD_DEFAULTS = {"byol": {"proj_dim": 1024, "hidden_dim": 1024, "pred_hidden_dim": 4096}}
    HEAD = staticmethod(mlp_head)

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [channels(n, width) for n in (64, 192)]
        layers: list[nn.Module] = [
            TemporalSeparableConv(3, c[0], 7, 2, 3, NORM),                     # Conv_1a
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),                     # MaxPool_2a
            Conv3dNormActivation(c[0], c[0], kernel_size=1, norm_layer=NORM),   # Conv_2b
            TemporalSeparableConv(c[0], c[1], 3, 1, 1, NORM),                  # Conv_2c
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),                     # MaxPool_3a
        ]
        c_in = c[1]
        for spec in MIXED:
            if isinstance(spec, str):
                layers.append(POOLS[spec]())
                continue
            block = GatedInception(c_in, *(channels(n, width) for n in spec[1:]))
            layers.append(block)
            c_in = block.out_channels
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in

    def features(self, x):
        return self.body(x)
