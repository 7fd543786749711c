"""Every registered backbone at tiny width and a few frames: shapes, and a gradient for every weight."""
from __future__ import annotations

import pytest
import torch

from train.backbones import BACKBONES, build_backbone


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_forward_and_backward(name):
    torch.manual_seed(0)
    bb = build_backbone(name, 0.125)
    x = torch.randn(2, 3, 8, 32, 32, requires_grad=True)
    feats = bb.features(x)
    assert feats.dim() == 5 and feats.shape[:2] == (2, bb.feature_dim)
    h = bb(x)
    assert h.shape == (2, bb.feature_dim) and torch.isfinite(h).all()
    h.pow(2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in bb.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"{name}: no finite gradient for {missing[:5]}"


def test_unknown_backbone_and_bad_width_are_refused():
    with pytest.raises(KeyError, match="unknown backbone 'resnet50'"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match="width"):
        build_backbone("c3d", 0)
