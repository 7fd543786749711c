"""Loss functions as pure functions of tensors (each unit-tested against a brute-force version)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
            z1_all: torch.Tensor | None = None, z2_all: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """SimCLR's NT-Xent for the local pairs (z1[i], z2[i]) against every pair in the global batch.

    ``z1_all``/``z2_all`` [N, D] are the embeddings gathered from every rank (this rank's at rows
    ``offset .. offset+B``); without them the local batch is the global one. Each of the 2B local
    anchors has one positive (its other view) and 2N - 2 negatives. Inputs need not be normalised.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    z1_all = z1 if z1_all is None else F.normalize(z1_all, dim=1)
    z2_all = z2 if z2_all is None else F.normalize(z2_all, dim=1)
    b, n = z1.shape[0], z1_all.shape[0]
    anchors = torch.cat([z1, z2])                        # [2B, D]
    cands = torch.cat([z1_all, z2_all])                  # [2N, D]
    logits = anchors @ cands.t() / temperature           # [2B, 2N]
    idx = torch.arange(b, device=z1.device) + offset
    self_cols = torch.cat([idx, idx + n])
    logits[torch.arange(2 * b, device=z1.device), self_cols] = float("-inf")
    positives = torch.cat([idx + n, idx])
    return F.cross_entropy(logits, positives)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE: each query's key is its positive, the queue [K, D] holds the negatives."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ F.normalize(queue, dim=1).t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss 2 - 2 cos(p, z), z a target (no gradient)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z))."""
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == target).float().mean()
