"""Chunked cosine top-k and recall@k, pure functions.

Ties: among equal similarities the gallery item with the lower index ranks first, in every chunking,
so the result equals a brute-force stable sort of the full similarity matrix.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _select(vals: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k per row of ``vals`` (columns in ascending ``idx`` order), ties to the lower index."""
    k = min(k, vals.shape[1])
    kth = vals.topk(k, dim=1).values[:, -1:]
    greater = vals > kth
    eq = vals == kth
    room = k - greater.sum(dim=1, keepdim=True)
    take = greater | (eq & (eq.cumsum(dim=1) <= room))
    cols = take.nonzero()[:, 1].view(vals.shape[0], k)          # ascending column order per row
    v, i = vals.gather(1, cols), idx.gather(1, cols)
    order = torch.sort(v, dim=1, descending=True, stable=True).indices
    return v.gather(1, order), i.gather(1, order)


def topk_cosine(queries: torch.Tensor, gallery: torch.Tensor, k: int, query_chunk: int = 1024,
                gallery_chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarities, gallery indices) [Q, k] of the k most similar gallery items per query.

    Memory is query_chunk x gallery_chunk similarities at a time, whatever Q and G.
    """
    q = F.normalize(queries.float(), dim=1)
    g = F.normalize(gallery.float(), dim=1)
    vals_out, idx_out = [], []
    for qs in range(0, len(q), query_chunk):
        qc = q[qs:qs + query_chunk]
        best_v = torch.empty((len(qc), 0), device=q.device)
        best_i = torch.empty((len(qc), 0), dtype=torch.long, device=q.device)
        for gs in range(0, len(g), gallery_chunk):
            sims = qc @ g[gs:gs + gallery_chunk].t()
            ids = torch.arange(gs, gs + sims.shape[1], device=q.device).expand_as(sims)
            v, i = _select(sims, ids, k)
            cand_v, cand_i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
            order = torch.argsort(cand_i, dim=1)                 # ascending index for the tie rule
            best_v, best_i = _select(cand_v.gather(1, order), cand_i.gather(1, order), k)
        vals_out.append(best_v)
        idx_out.append(best_i)
    return torch.cat(vals_out), torch.cat(idx_out)


def recall_at_k(top_idx: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, ks=(1, 5, 10, 20, 50)) -> dict:
    """R@k: the fraction of queries with at least one gallery video of their class in the top k."""
    hits = gallery_labels[top_idx] == query_labels[:, None]
    # a gallery smaller than k is wholly within the top k
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
