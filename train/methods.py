"""Contrastive methods as small classes on one base (in the manner of solo-learn).

A method owns the projection (and prediction) heads and any target network; ``forward(x1, x2)``
returns (contrastive loss, backbone feature of clip 1, of clip 2) so the pretext heads can share
the backbone pass; ``on_step(progress)`` runs momentum updates after each optimiser step. Each
method registers with the dataclass of its parameters (``model.method_params``, checked and filled
with its defaults by train.config); the comment on each field is its documentation.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ddp as D
from .backbones import Backbone, initialise
from .losses import byol_loss, info_nce, negative_cosine, nt_xent

METHODS: dict[str, type["Method"]] = {}


def register(name: str, params: type):
    """Register a method under ``name`` with the dataclass of its parameters (``model.method_params``)."""
    def deco(cls):
        METHODS[name] = cls
        cls.name = name
        cls.Params = params
        return cls
    return deco


def build_method(name: str, backbone: Backbone, **params) -> "Method":
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    cls = METHODS[name]
    return cls(backbone, cls.Params(**params))


def mlp(dims: list[int], bn_last: bool = False, hidden_bias: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=(last and not bn_last) or (not last and hidden_bias)))
        if not last:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        elif bn_last:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
    return nn.Sequential(*layers)


class Method(nn.Module):
    name = "base"
    Params: type

    def __init__(self, backbone: Backbone, p):
        super().__init__()
        self.backbone = backbone
        self.params = p
        self.dim = backbone.feature_dim
        # None: the backbone's feature width (what solo-learn's small-model recipes use)
        self.hidden = p.hidden_dim or self.dim

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def on_step(self, progress: float) -> None:
        """Called after each optimiser step with the fraction of training done."""


@torch.no_grad()
def ema_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameters and buffers alike."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)


def frozen_copy(m: nn.Module) -> nn.Module:
    c = copy.deepcopy(m)
    c.requires_grad_(False)
    return c


@dataclasses.dataclass
class SimCLRParams:
    proj_dim: int = 128                 # output width of the projector
    hidden_dim: Optional[int] = None    # projector hidden width; null: the backbone's feature width
    temperature: float = 0.1            # NT-Xent temperature


@register("simclr", SimCLRParams)
class SimCLR(Method):
    def __init__(self, backbone, p: SimCLRParams):
        super().__init__(backbone, p)
        self.projector = mlp([self.dim, self.hidden, p.proj_dim])

    def forward(self, x1, x2):
        h1, h2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(h1), self.projector(h2)
        # negatives from every rank; this rank's rows sit at rank * B in the gathered batch
        loss = nt_xent(z1, z2, self.params.temperature, D.gather_with_grad(z1), D.gather_with_grad(z2),
                       offset=D.rank() * z1.shape[0])
        return loss, h1, h2


@dataclasses.dataclass
class MoCoParams:
    proj_dim: int = 128                 # output width of the projector
    hidden_dim: Optional[int] = None    # projector hidden width; null: the backbone's feature width
    temperature: float = 0.2            # InfoNCE temperature
    queue_size: int = 4096              # negatives kept in the queue
    momentum: float = 0.99              # EMA rate of the key encoder


@register("moco", MoCoParams)
class MoCo(Method):
    """MoCo v2: momentum key encoder, a queue of keys gathered from every rank (any batch size);
    the loss is the mean of the two directions."""

    def __init__(self, backbone, p: MoCoParams):
        super().__init__(backbone, p)
        self.projector = mlp([self.dim, self.hidden, p.proj_dim])
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(p.queue_size, p.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        keys = D.gather_no_grad(keys)
        k = self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % k
        self.queue[idx[-k:]] = F.normalize(keys[-k:], dim=1)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % k)

    def forward(self, x1, x2):
        h1, h2 = self.backbone(x1), self.backbone(x2)
        q1, q2 = self.projector(h1), self.projector(h2)
        with torch.no_grad():
            k1 = self.key_projector(self.key_backbone(x1))
            k2 = self.key_projector(self.key_backbone(x2))
        queue = self.queue.clone().detach()
        t = self.params.temperature
        loss = (info_nce(q1, k2, queue, t) + info_nce(q2, k1, queue, t)) / 2
        self.enqueue(torch.cat([k1, k2]))
        return loss, h1, h2

    @torch.no_grad()
    def on_step(self, progress):
        ema_(self.key_backbone, self.backbone, self.params.momentum)
        ema_(self.key_projector, self.projector, self.params.momentum)


@dataclasses.dataclass
class BYOLParams:   # the authors' R(2+1)D sizes; other backbones' are in their METHOD_DEFAULTS (train.backbones)
    proj_dim: Optional[int] = 512       # projector output width; null: no projector (the authors' C3D, R3D-18)
    hidden_dim: Optional[int] = 4096    # projector hidden width (the authors': 4096); null: the feature width
    pred_hidden_dim: Optional[int] = None   # predictor hidden width; null: hidden_dim (the authors: 4096)
    momentum: float = 0.996             # EMA rate of the target network (the authors keep it constant)
    momentum_cosine: bool = False       # raise the rate from momentum to 1 on a cosine schedule (BYOL paper)


@register("byol", BYOLParams)
class BYOL(Method):
    """BYOL as the CSTP authors train it: projector and predictor 512-4096-512 on R(2+1)D's 512-d
    feature (no projector with C3D and R3D-18: the predictor works on the feature itself), a target
    network (backbone + projector) following the online one by EMA at a constant rate, and the
    regression loss summed over both directions (their ``_cal_loss``)."""

    def __init__(self, backbone, p: BYOLParams):
        super().__init__(backbone, p)
        out = p.proj_dim or self.dim
        # the authors' Projector / Predictor: Linear (with bias), BN, ReLU, Linear
        self.projector = mlp([self.dim, self.hidden, out], hidden_bias=True) if p.proj_dim else nn.Identity()
        self.predictor = mlp([out, p.pred_hidden_dim or self.hidden, out], hidden_bias=True)
        initialise(self.projector, backbone.init_scheme)
        initialise(self.predictor, backbone.init_scheme)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.tau = p.momentum

    def forward(self, x1, x2):
        h1, h2 = self.backbone(x1), self.backbone(x2)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(x1))
            t2 = self.target_projector(self.target_backbone(x2))
        return byol_loss(p1, t2) + byol_loss(p2, t1), h1, h2

    @staticmethod
    def tau_at(base: float, progress: float) -> float:
        return 1 - (1 - base) * (math.cos(math.pi * min(1.0, progress)) + 1) / 2

    @torch.no_grad()
    def on_step(self, progress):
        p = self.params
        self.tau = self.tau_at(p.momentum, progress) if p.momentum_cosine else p.momentum
        ema_(self.target_backbone, self.backbone, self.tau)
        ema_(self.target_projector, self.projector, self.tau)


@dataclasses.dataclass
class SimSiamParams:
    proj_dim: int = 128                 # projector output width
    hidden_dim: Optional[int] = None    # projector hidden width; null: the backbone's feature width
    pred_hidden_dim: Optional[int] = None   # predictor bottleneck width; null: proj_dim / 4


@register("simsiam", SimSiamParams)
class SimSiam(Method):
    """SimSiam: no target network, a stop-gradient instead; the loss is the mean of both directions."""

    def __init__(self, backbone, p: SimSiamParams):
        super().__init__(backbone, p)
        self.projector = mlp([self.dim, self.hidden, self.hidden, p.proj_dim], bn_last=True)
        self.predictor = mlp([p.proj_dim, p.pred_hidden_dim or max(4, p.proj_dim // 4), p.proj_dim])

    def forward(self, x1, x2):
        h1, h2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(h1), self.projector(h2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2, h1, h2
