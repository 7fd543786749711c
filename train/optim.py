"""Optimisers by name (SGD, AdamW, LARS) and the schedule: linear warmup, then cosine to zero."""
from __future__ import annotations

import math

import torch


class LARS(torch.optim.Optimizer):
    """SGD with layer-wise adaptive rate scaling (You et al., 2017); biases and norms excluded."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=g["weight_decay"])
                    pn, dn = torch.norm(p), torch.norm(d)
                    ratio = torch.where((pn > 0) & (dn > 0), g["trust"] * pn / dn, torch.ones_like(pn))
                    d = d.mul(ratio)
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS = {
    "sgd": lambda m, c, lr: torch.optim.SGD(_param_groups(m, c.weight_decay), lr=lr, momentum=c.momentum),
    "adamw": lambda m, c, lr: torch.optim.AdamW(_param_groups(m, c.weight_decay), lr=lr),
    "lars": lambda m, c, lr: LARS(_param_groups(m, c.weight_decay), lr=lr, momentum=c.momentum),
}


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: ``base_lr`` is the rate for a global batch of 256 clips."""
    return base_lr * global_batch / 256


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model, optim_cfg, global_batch: int, warmup_steps: int, total_steps: int):
    lr = scaled_lr(optim_cfg.lr, global_batch)
    opt = OPTIMIZERS[optim_cfg.name](model, optim_cfg, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup_steps, total_steps))
    return opt, sched
