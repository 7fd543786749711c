"""Video backbones by name. Each maps [B, 3, T, H, W] to a pooled feature [B, D] (``forward``) and
exposes its last conv block [B, D, t, h, w] (``features``) for evaluation.

``width`` scales every channel count (0.125 gives the tiny variants used in CPU tests). At width 1,
r3d_18 and r2plus1d_18 are torchvision's own models, so an exported state_dict loads straight into
``torchvision.models.video.r3d_18()``; their ``fc`` is kept, untrained and frozen, for that reason.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn
from torchvision.models.video import r2plus1d_18, r3d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple
from torchvision.models.video.s3d import SepInceptionBlock3D, TemporalSeparableConv
from torchvision.ops.misc import Conv3dNormActivation

BACKBONES: dict[str, Callable[..., "Backbone"]] = {}


def register(name: str):
    def deco(fn):
        BACKBONES[name] = fn
        return fn
    return deco


def build_backbone(name: str, width: float = 1.0) -> "Backbone":
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; valid: {sorted(BACKBONES)}")
    if not 0 < width <= 4:
        raise ValueError(f"backbone width must be in (0, 4], got {width}")
    return BACKBONES[name](width)


class Backbone(nn.Module):
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))


def _c(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


# -- ResNet-3D family ------------------------------------------------------------------------

class _ResNet3D(nn.Module):
    """torchvision's VideoResNet layout (stem, layer1..4) at any width."""

    def __init__(self, conv: type, layers: tuple[int, ...], width: float, r2plus1d_stem: bool):
        super().__init__()
        w = [_c(n, width) for n in (64, 128, 256, 512)]
        if r2plus1d_stem:
            mid = _c(45, width)
            self.stem = nn.Sequential(
                nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                nn.Conv3d(mid, w[0], (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, w[0], (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True))
        inplanes = w[0]
        for i, (planes, n) in enumerate(zip(w, layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or inplanes != planes:
                    ds = conv.get_downsample_stride(s)
                    down = nn.Sequential(nn.Conv3d(inplanes, planes, 1, ds, bias=False), nn.BatchNorm3d(planes))
                blocks.append(BasicBlock(inplanes, planes, conv, s, down))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_dim = inplanes


class ResNet3DBackbone(Backbone):
    def __init__(self, net: nn.Module, feature_dim: int):
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        if getattr(net, "fc", None) is not None:
            net.fc.requires_grad_(False)   # kept for torchvision compatibility, never trained

    def features(self, x):
        n = self.net
        return n.layer4(n.layer3(n.layer2(n.layer1(n.stem(x)))))

    def torchvision_state_dict(self) -> dict:
        return self.net.state_dict()


def _resnet(tv_builder, conv, layers, r2plus1d_stem):
    def build(width: float) -> Backbone:
        if width == 1.0 and tv_builder is not None:
            return ResNet3DBackbone(tv_builder(weights=None), 512)
        net = _ResNet3D(conv, layers, width, r2plus1d_stem)
        return ResNet3DBackbone(net, net.out_dim)
    return build


register("r3d_18")(_resnet(r3d_18, Conv3DSimple, (2, 2, 2, 2), False))
register("r2plus1d_18")(_resnet(r2plus1d_18, Conv2Plus1D, (2, 2, 2, 2), True))
# R(2+1)D-10 as VCOP, IIC and the CSTP paper use it: one block per stage.
register("r21d_10")(_resnet(None, Conv2Plus1D, (1, 1, 1, 1), True))


# -- C3D -------------------------------------------------------------------------------------

class C3D(Backbone):
    """C3D with batch norm, as VCOP trains it (conv1-conv5b; features after conv5b)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [_c(n, width) for n in (64, 128, 256, 512)]

        def conv(i, o):
            return [nn.Conv3d(i, o, 3, padding=1), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *conv(3, c[0]), nn.MaxPool3d((1, 2, 2), (1, 2, 2)),
            *conv(c[0], c[1]), nn.MaxPool3d(2, 2),
            *conv(c[1], c[2]), *conv(c[2], c[2]), nn.MaxPool3d(2, 2),
            *conv(c[2], c[3]), *conv(c[3], c[3]), nn.MaxPool3d(2, 2),
            *conv(c[3], c[3]), *conv(c[3], c[3]))
        self.feature_dim = c[3]

    def features(self, x):
        return self.body(x)


register("c3d")(C3D)


# -- S3D-G -----------------------------------------------------------------------------------

class SelfGating(nn.Module):
    """S3D-G's feature gating: channels reweighted by a sigmoid of their spatio-temporal mean."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        g = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * g[:, :, None, None, None]


class S3DG(Backbone):
    """torchvision's S3D blocks with self-gating after each inception block (Xie et al., 2018)."""

    # (in, b0, b1_mid, b1, b2_mid, b2, b3) of torchvision's S3D
    BLOCKS = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "pool",
              (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
              (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), "pool2",
              (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]

    def __init__(self, width: float = 1.0):
        super().__init__()
        norm = partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)
        c = partial(_c, width=width)
        layers: list[nn.Module] = [
            TemporalSeparableConv(3, c(64), 7, 2, 3, norm),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            Conv3dNormActivation(c(64), c(64), kernel_size=1, stride=1, norm_layer=norm),
            TemporalSeparableConv(c(64), c(192), 3, 1, 1, norm),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ]
        channels = c(192)
        for spec in self.BLOCKS:
            if spec == "pool":
                layers.append(nn.MaxPool3d(3, 2, 1))
                continue
            if spec == "pool2":
                layers.append(nn.MaxPool3d(2, 2))
                continue
            _, b0, b1m, b1, b2m, b2, b3 = (c(n) for n in spec)
            layers += [SepInceptionBlock3D(channels, b0, b1m, b1, b2m, b2, b3, norm), SelfGating(b0 + b1 + b2 + b3)]
            channels = b0 + b1 + b2 + b3
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def features(self, x):
        return self.body(x)


register("s3dg")(S3DG)
