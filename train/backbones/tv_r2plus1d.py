"""torchvision's R(2+1)D-18 (``torchvision.models.video.r2plus1d_18``): an extra backbone, NOT one of
the paper's. Two blocks per stage, a fixed 45-channel factorised stem, 1x1x1 unfactorised shortcuts;
31.5M parameters with its (untrained, frozen) ``fc``. At width 1 it is torchvision's own model, so an
exported state_dict (``torchvision_state_dict``) loads straight into ``r2plus1d_18()``; at other
widths the same layout is rebuilt from torchvision's blocks with every channel count scaled.
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D

from .base import Backbone, channels, mlp_head, register


class _ScaledR2Plus1D18(nn.Module):
    """torchvision's VideoResNet layout (R(2+1)D stem, layer1..4 of two blocks) at any width."""

    def __init__(self, width: float):
        super().__init__()
        w = [channels(n, width) for n in (64, 128, 256, 512)]
        mid = channels(45, width)
        self.stem = nn.Sequential(
            nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, w[0], (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True))
        c_in = w[0]
        for i, planes in enumerate(w):
            blocks = []
            for b in range(2):
                s = 2 if i > 0 and b == 0 else 1
                down = None
                if s != 1 or c_in != planes:
                    down = nn.Sequential(nn.Conv3d(c_in, planes, 1, Conv2Plus1D.get_downsample_stride(s), bias=False),
                                         nn.BatchNorm3d(planes))
                blocks.append(BasicBlock(c_in, planes, Conv2Plus1D, s, down))
                c_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = None
        self.out_dim = c_in


@register("r2plus1d_18")
class TorchvisionR2Plus1D18(Backbone):
    """torchvision's r2plus1d_18 (not the paper's R(2+1)D-10; see r21d_10)."""
    HEAD = staticmethod(mlp_head)

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.net = r2plus1d_18(weights=None) if width == 1.0 else _ScaledR2Plus1D18(width)
        self.feature_dim = 512 if width == 1.0 else self.net.out_dim
        if self.net.fc is not None:
            self.net.fc.requires_grad_(False)   # kept for torchvision compatibility, never trained

    def features(self, x):
        n = self.net
        return n.layer4(n.layer3(n.layer2(n.layer1(n.stem(x)))))

    def torchvision_state_dict(self) -> dict:
        return self.net.state_dict()
