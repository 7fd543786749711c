"""R(2+1)D-10 as the CSTP authors build it (their models/pace/r21d_byol.py ``R2Plus1DNet`` with layer
sizes 1, 1, 1, 1): every 3-D convolution factorised into a spatial (1, k, k) and a temporal (k, 1, 1)
one, with the intermediate width of Tran et al. (2018, section 3.5) chosen so the factorised pair has
the parameters of the full kernel; the stem (3x7x7, 83 intermediate channels) and the strided
shortcuts (1x1x1, e.g. 42 intermediate channels from 64 to 128) are factorised the same way.
No max-pool; 512-d feature. 14,365,303 parameters at width 1.
"""
from __future__ import annotations

import torch.nn as nn
from torch.nn.modules.utils import _triple

from .base import Backbone, channels, mlp_head, register


def intermediate_channels(c_in: int, c_out: int, kernel) -> int:
    """M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)) for a t x d x d kernel (Tran et al., 2018)."""
    t, h, w = _triple(kernel)
    return (t * h * w * c_in * c_out) // (h * w * c_in + t * c_out)


class FactorisedConv3d(nn.Sequential):
    """Spatial conv -> BN -> ReLU -> temporal conv; used like a Conv3d (the caller adds BN and ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = _triple(kernel), _triple(stride), _triple(padding)
        mid = intermediate_channels(c_in, c_out, kernel)
        super().__init__(
            nn.Conv3d(c_in, mid, (1, kh, kw), (1, sh, sw), (0, ph, pw), bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, c_out, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), bias=False))


class ResBlock(nn.Module):
    """Two factorised 3x3x3 convs with a residual; ``down``: stride 2 in time and space, and a
    factorised 1x1x1 strided conv + BN on the shortcut."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        s = 2 if down else 1
        # the shortcut first: parameters in the authors' order, so their weights load by position
        self.shortcut = (nn.Sequential(FactorisedConv3d(c_in, c_out, 1, 2), nn.BatchNorm3d(c_out))
                         if down else nn.Identity())
        self.conv1 = nn.Sequential(FactorisedConv3d(c_in, c_out, 3, s, 1), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(FactorisedConv3d(c_out, c_out, 3, 1, 1), nn.BatchNorm3d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv2(self.conv1(x)))


class R2Plus1D(Backbone):
    """The authors' R2Plus1DNet: stem, then four stages of ``layers[i]`` blocks (the last three halve
    time and space in their first block)."""

    def __init__(self, width: float = 1.0, layers: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        w = [channels(n, width) for n in (64, 128, 256, 512)]
        self.stem = nn.Sequential(FactorisedConv3d(3, w[0], (3, 7, 7), (1, 2, 2), (1, 3, 3)),
                                  nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True))
        c_in = w[0]
        for i, (c_out, n) in enumerate(zip(w, layers)):
            blocks = [ResBlock(c_in if b == 0 else c_out, c_out, down=(i > 0 and b == 0)) for b in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.feature_dim = c_in

    def features(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


@register("r21d_10")
class R21D10(R2Plus1D):
    """R(2+1)D-10 as VCOP, IIC and the CSTP paper use it: one block per stage (the authors' default)."""
    HEAD = staticmethod(mlp_head)
    # projector and predictor 512-4096-512: train.methods.BYOLParams' own defaults
    METHOD_DEFAULTS: dict[str, dict] = {}
