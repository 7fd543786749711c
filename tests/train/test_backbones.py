"""Backbones: every registered one at tiny width runs forward and backward; at width 1 the paper's
four equal the authors' networks parameter for parameter (shapes recorded from their classes in
tests/fixtures/authors_shapes/), and so do the projector, predictor and pretext heads built for each;
the initialisation is theirs by default."""
from __future__ import annotations

import json
import math
from collections import Counter
from functools import lru_cache

import pytest
import torch
import torch.nn as nn

from tests.conftest import ROOT
from train.backbones import BACKBONES, build_backbone
from train.config import ConfigError, load_config
from train.methods import build_method
from train.model import CSTPModel

PAPER = ("r21d_10", "c3d", "r3d_18", "s3dg")
FIXTURES = ROOT / "tests/fixtures/authors_shapes"
TINY = str(ROOT / "configs/tiny_cpu.yaml")
# parameters of the authors' backbones (their online_net without a projector), measured from their classes
AUTHORS_PARAMS = {"r21d_10": 14_365_303, "c3d": 27_661_440, "r3d_18": 33_203_904, "s3dg": 9_098_000}


@lru_cache(maxsize=None)
def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["parts"]


def shapes(module: nn.Module) -> Counter:
    return Counter(tuple(p.shape) for p in module.parameters())


def theirs(part: dict | None) -> Counter:
    return Counter(tuple(s) for s in part["shapes"]) if part else Counter()


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


def test_unknown_backbone_bad_width_and_unknown_init_are_refused():
    with pytest.raises(KeyError, match="unknown backbone 'resnet50'"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match="width"):
        build_backbone("c3d", 0)
    with pytest.raises(KeyError, match=r"unknown init 'xavier'; valid: \['authors', 'pytorch'\]"):
        build_backbone("c3d", 0.125, "xavier")


@pytest.mark.parametrize("name", PAPER)
def test_backbone_projector_predictor_and_heads_have_the_authors_parameter_shapes(name):
    torch.manual_seed(0)
    bb, parts = build_backbone(name), fixture(name)
    ours, want = shapes(bb), theirs(parts["backbone"])
    assert ours == want, f"{name}: ours lacks {dict(want - ours)}, has extra {dict(ours - want)}"
    assert sum(p.numel() for p in bb.parameters()) == parts["backbone"]["n_params"] == AUTHORS_PARAMS[name]
    assert bb.feature_dim == (1024 if name == "s3dg" else 512)

    # BYOL as configured for this backbone (its per-backbone defaults resolved by train.config)
    cfg = load_config(None, ["data.shards=x", f"model.backbone={name}"])
    m = build_method("byol", bb, **cfg.model.method_params)
    assert shapes(m.projector) == theirs(parts["projector"]), name
    assert shapes(m.predictor) == theirs(parts["predictor"]), name
    h = torch.randn(3, bb.feature_dim)
    assert m.predictor(m.projector(h)).shape == m.target_projector(h).shape    # the regression's two sides agree

    # each pretext head on the feature the backbone hands it (per clip; two clips' concatenated per pair)
    for head, per_pair in (("rate", False), ("rotation", False), ("overlap_spatial", True), ("overlap_temporal", True)):
        part = parts[f"head_{head}"]
        in_dim, n_classes = part["shapes"][0][-1], part["shapes"][-1][0]
        assert in_dim == bb.feature_dim * (2 if per_pair else 1), (name, head)
        assert shapes(bb.make_head(in_dim, n_classes)) == theirs(part), (name, head)


def test_r21d_factorised_widths_are_the_papers_formula():
    parts = fixture("r21d_10")["backbone"]["shapes"]
    assert parts[0] == [83, 3, 1, 7, 7] and [42, 64, 1, 1, 1] in parts      # the stem; the 64 -> 128 shortcut
    ours = shapes(build_backbone("r21d_10", init="pytorch"))
    assert ours[(83, 3, 1, 7, 7)] == 1 and ours[(42, 64, 1, 1, 1)] == 1


def test_per_backbone_method_defaults_sit_under_the_config():
    def byol(*over):
        return load_config(None, ["data.shards=x", *over]).model.method_params
    assert {k: byol()[k] for k in ("proj_dim", "hidden_dim", "pred_hidden_dim")} == \
        {"proj_dim": 512, "hidden_dim": 4096, "pred_hidden_dim": None}
    assert byol("model.backbone=c3d")["proj_dim"] is None
    s = byol("model.backbone=s3dg", "model.method_params.proj_dim=8")
    assert (s["proj_dim"], s["hidden_dim"], s["pred_hidden_dim"]) == (8, 1024, 4096)   # given wins, the rest stays
    assert load_config(None, ["data.shards=x", "model.backbone=s3dg", "model.method=simclr"]).model.method_params[
        "proj_dim"] == 128    # only the authors' method has per-backbone sizes


def _bn_scales(module):
    return torch.cat([m.weight.detach().flatten() for m in module.modules()
                      if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d))])


@pytest.mark.parametrize("name", PAPER)
def test_authors_init_is_glorot_uniform_on_weights_and_batch_norm_scales(name):
    torch.manual_seed(0)
    bb = build_backbone(name, 0.25)
    convs = [m.weight for m in bb.modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
    for w in convs:
        field = w[0][0].numel()
        bound = math.sqrt(6 / ((w.shape[0] + w.shape[1]) * field))
        assert w.abs().max() <= bound and (w.numel() < 50 or w.abs().max() > 0.8 * bound)
    scales = _bn_scales(bb)
    assert (scales != 1).all() and (scales < 0).any()      # uniform around 0, as theirs, not PyTorch's ones
    head = bb.make_head(2 * bb.feature_dim, 5)
    assert all(w.abs().max() <= math.sqrt(6 / sum(w.shape)) for w in (l.weight for l in head.modules()
                                                                       if isinstance(l, nn.Linear)))
    torch.manual_seed(0)
    plain = build_backbone(name, 0.25, "pytorch")
    assert (_bn_scales(plain) == 1).all()


def test_model_init_key_reaches_the_backbone_projector_and_heads():
    base = ["data.shards=x", "model.method_params={proj_dim: 8, hidden_dim: 8}"]
    assert load_config(TINY, base).model.init == "authors"
    with pytest.raises(ConfigError, match=r"model.init: unknown init 'he'; valid: \['authors', 'pytorch'\]"):
        load_config(TINY, [*base, "model.init=he"])
    for init, ones in (("authors", False), ("pytorch", True)):
        model = CSTPModel(load_config(TINY, [*base, f"model.init={init}"]))
        assert bool((_bn_scales(model.backbone) == 1).all()) is ones
        assert bool((_bn_scales(model.method.projector) == 1).all()) is ones


def test_s3dg_batch_norm_is_pytorchs_default_as_theirs_and_gates_each_branch():
    bb = build_backbone("s3dg", 0.125, "pytorch")
    norms = [m for m in bb.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and all((m.eps, m.momentum) == (1e-5, 0.1) for m in norms)    # not TensorFlow's 1e-3 / 0.001
    gates = [m.fc for m in bb.modules() if type(m).__name__ == "SelfGating"]
    assert len(gates) == 4 * 9                  # four branches in each of the nine Inception blocks
