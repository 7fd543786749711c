"""Batch norm whose statistics span every rank.

torch's SyncBatchNorm runs on GPUs only; on CPU (gloo) this module does the same by all-reducing
each channel's sum, sum of squares and count, with gradients flowing through the reduction, so a
multi-process CPU run normalises exactly like one process on the concatenated batch. (The reference
code's BN was per GPU, so its statistics never saw the other ranks' clips.)
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .ddp import all_reduce_with_grad


class GlobalBatchNorm(_BatchNorm):
    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or not self.track_running_stats, self.momentum or 0.1, self.eps)
        dims = [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        n_local = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        stats = torch.cat([xf.sum(dim=dims), (xf * xf).sum(dim=dims), n_local])
        stats = all_reduce_with_grad(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)     # rounding can dip below 0
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
                self.num_batches_tracked += 1
        # Folded into one per-channel scale and shift, so the full-size tensor sees a single fused
        # multiply-add (the step's cost on CPU) while gradients still reach the statistics.
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        shape = [1, c] + [1] * (x.dim() - 2)
        y = torch.addcmul(shift.view(shape), xf, scale.view(shape))
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm in ``module`` made global: torch's SyncBatchNorm on GPU, ours on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_bn(child, device))
    return out
