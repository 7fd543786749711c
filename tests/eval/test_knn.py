"""eval.knn against a brute-force reference, ties included."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.knn import recall_at_k, topk_cosine


def brute(q, g, k):
    s = (F.normalize(q, dim=1) @ F.normalize(g, dim=1).t()).numpy()
    order = np.array([sorted(range(len(g)), key=lambda j: (-s[i, j], j))[:k] for i in range(len(q))])
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("qc,gc", [(1024, 65536), (3, 7), (1, 1)])
def test_topk_matches_brute_force_including_ties(qc, gc):
    g = torch.Generator().manual_seed(0)
    # few distinct directions: many exact ties
    base = torch.randn(4, 8, generator=g)
    gallery = base[torch.randint(0, 4, (40,), generator=g)] * torch.randint(1, 3, (40, 1), generator=g)
    queries = base[torch.randint(0, 4, (9,), generator=g)] + 0.0
    v, i = topk_cosine(queries, gallery, k=12, query_chunk=qc, gallery_chunk=gc)
    bv, bi = brute(queries, gallery, 12)
    assert np.array_equal(i.numpy(), bi)
    assert np.allclose(v.numpy(), bv, atol=1e-6)


def test_topk_on_random_features():
    g = torch.Generator().manual_seed(1)
    q, gal = torch.randn(30, 16, generator=g), torch.randn(200, 16, generator=g)
    v, i = topk_cosine(q, gal, 50, query_chunk=7, gallery_chunk=33)
    bv, bi = brute(q, gal, 50)
    assert np.array_equal(i.numpy(), bi)


def test_recall_at_k():
    top = np.array([[0, 1, 2], [2, 1, 0], [1, 2, 0]])
    gl = np.array([5, 6, 7])
    ql = np.array([5, 5, 9])
    assert recall_at_k(top, ql, gl, ks=(1, 2, 3)) == {"R@1": 1 / 3, "R@2": 1 / 3, "R@3": 2 / 3}
