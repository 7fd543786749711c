"""The backbone interface, the registry of backbones by name, and the weight initialisations.

A backbone maps [B, 3, T, H, W] to a pooled feature [B, D] (``forward``: the spatio-temporal mean,
the authors' ``AdaptiveAvgPool3d(1)``) and exposes its last conv block [B, D, t, h, w] (``features``)
for evaluation. ``make_head`` builds a pretext head as the authors build it for this backbone, and
``METHOD_DEFAULTS`` holds the projector / predictor sizes the authors use with it, per contrastive
method (train.config lays them over the method's own defaults, under what a config gives).

``width`` scales every channel count (0.125 gives the tiny variants the CPU tests use); at width 1
each paper backbone is the authors' network parameter for parameter (tests/train/test_backbones.py
checks the shapes against fixtures recorded from their classes).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

BACKBONES: dict[str, type["Backbone"]] = {}


def register(name: str):
    def deco(cls):
        BACKBONES[name] = cls
        cls.name = name
        return cls
    return deco


def channels(n: int, width: float) -> int:
    """``n`` channels scaled by ``width`` (at least 4, so the tiny variants keep every layer)."""
    return max(4, int(round(n * width)))


# -- initialisation ----------------------------------------------------------------------------

def _glorot_bound(w: torch.Tensor) -> float:
    """The authors' ``_glorot_uniform`` bound. For a 1-d tensor (a batch norm's scale) they take
    fan_in = fan_out = int(n / 2), so the scales start uniform in +-sqrt(6 / (2 int(n / 2)))."""
    if w.dim() < 2:
        fan_in = fan_out = w.shape[0] // 2
    else:
        field = w[0][0].numel()
        fan_in, fan_out = w.shape[1] * field, w.shape[0] * field
    return math.sqrt(6.0 / (fan_in + fan_out))


@torch.no_grad()
def authors_init_(module: nn.Module) -> None:
    """Glorot-uniform weights of every Conv3d, Linear and batch norm, as the authors' *BYOL classes
    initialise their whole model; biases keep PyTorch's default (the authors do not touch them)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm3d)) and m.weight is not None:
            b = _glorot_bound(m.weight)
            m.weight.uniform_(-b, b)


def pytorch_init_(module: nn.Module) -> None:
    """Leave every layer as its constructor initialised it (PyTorch's defaults; torchvision's own
    scheme for r2plus1d_18)."""


INITS: dict[str, Callable[[nn.Module], None]] = {"authors": authors_init_, "pytorch": pytorch_init_}


def initialise(module: nn.Module, scheme: str) -> nn.Module:
    if scheme not in INITS:
        raise KeyError(f"unknown init {scheme!r}; valid: {sorted(INITS)}")
    INITS[scheme](module)
    return module


# -- heads -------------------------------------------------------------------------------------

def mlp_head(in_dim: int, n_classes: int) -> nn.Sequential:
    """The authors' pretext head for R(2+1)D and S3D-G: Linear(in, in), BatchNorm1d, ReLU, Linear(in, n)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
                         nn.Linear(in_dim, n_classes))


def linear_head(in_dim: int, n_classes: int) -> nn.Linear:
    """The authors' pretext head for C3D and R3D-18: one Linear layer."""
    return nn.Linear(in_dim, n_classes)


class Backbone(nn.Module):
    name: str
    feature_dim: int
    init_scheme: str = "pytorch"
    # method name -> method_params the authors use with this backbone where they differ from the
    # method's own defaults (train.methods, which are the authors' R(2+1)D values)
    METHOD_DEFAULTS: dict[str, dict] = {}
    HEAD: Callable[[int, int], nn.Module] = staticmethod(mlp_head)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))

    def make_head(self, in_dim: int, n_classes: int) -> nn.Module:
        """A pretext head as the authors build it for this backbone, initialised like the backbone."""
        return initialise(self.HEAD(in_dim, n_classes), self.init_scheme)


def build_backbone(name: str, width: float = 1.0, init: str = "authors") -> Backbone:
    """Backbone ``name`` at channel multiplier ``width``, initialised by ``init`` (``INITS``)."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; valid: {sorted(BACKBONES)}")
    if not 0 < width <= 4:
        raise ValueError(f"backbone width must be in (0, 4], got {width}")
    if init not in INITS:
        raise KeyError(f"unknown init {init!r}; valid: {sorted(INITS)}")
    bb = BACKBONES[name](width)
    bb.init_scheme = init
    return initialise(bb, init)
