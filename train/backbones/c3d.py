"""C3D with batch norm as the CSTP authors build it (their models/pace/c3d_byol.py ``C3D``): conv1 to
conv5b, each 3x3x3 with a bias, batch norm and ReLU; max-pool 1x2x2 after conv1, 2x2x2 after conv2,
conv3b and conv4b; 512-d feature. 27,661,440 parameters at width 1.

With C3D the authors' BYOL has no projector (the predictor, 512-4096-512, works on the backbone
feature and the target is the target backbone's feature) and each pretext head is one Linear layer.
"""
from __future__ import annotations

import torch.nn as nn

from .base import Backbone, channels, linear_head, register


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, padding=1), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]


@register("c3d")
class C3D(Backbone):
    METHOD_DEFAULTS = {"byol": {"proj_dim": None}}
    HEAD = staticmethod(linear_head)

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [channels(n, width) for n in (64, 128, 256, 512)]
        self.body = nn.Sequential(
            *_conv(3, c[0]), nn.MaxPool3d((1, 2, 2), (1, 2, 2)),
            *_conv(c[0], c[1]), nn.MaxPool3d(2, 2),
            *_conv(c[1], c[2]), *_conv(c[2], c[2]), nn.MaxPool3d(2, 2),
            *_conv(c[2], c[3]), *_conv(c[3], c[3]), nn.MaxPool3d(2, 2),
            *_conv(c[3], c[3]), *_conv(c[3], c[3]))
        self.feature_dim = c[3]

    def features(self, x):
        return self.body(x)
