"""R3D-18 as the CSTP authors build it (their models/BE/r3d_byol.py ``ResNet`` with ``BasicBlock``,
depth 18, shortcut type B, as in 3D-ResNets-PyTorch and BE): a 7x7x7 stem with stride (1, 2, 2) and
a 3x3x3 max-pool with stride 2, then four stages of two basic blocks of 3x3x3 convs (no biases), a
1x1x1 strided conv + BN on each changing shortcut; no classifier; 512-d feature. 33,203,904
parameters at width 1. The blocks are torchvision's (same layers, same shapes); the stem and the
max-pool are where torchvision's r3d_18 (3x7x7 stem, no max-pool) differs.

With R3D-18 the authors' BYOL has no projector and each pretext head is one Linear layer.
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple

from .base import Backbone, channels, linear_head, register


@register("r3d_18")
class R3D18(Backbone):
    METHOD_DEFAULTS = {"byol": {"proj_dim": None}}
    HEAD = staticmethod(linear_head)

    def __init__(self, width: float = 1.0, layers: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        w = [channels(n, width) for n in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv3d(3, w[0], 7, (1, 2, 2), 3, bias=False), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True),
            nn.MaxPool3d(3, 2, 1))
        c_in = w[0]
        for i, (planes, n) in enumerate(zip(w, layers)):
            blocks = []
            for b in range(n):
                stride = 2 if i > 0 and b == 0 else 1
                down = None
                if stride != 1 or c_in != planes:
                    down = nn.Sequential(nn.Conv3d(c_in, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))
                blocks.append(BasicBlock(c_in, planes, Conv3DSimple, stride, down))
                c_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = c_in

    def features(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
