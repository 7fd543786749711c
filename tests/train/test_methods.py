"""train.methods and train.model: each method's parameters, the authors' BYOL heads, and eq. 5 as the
authors weight and sum it (main_byol.py: 0.1 x BYOL summed over both directions + every pretext term)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shards.pairs import geometry
from shards.sampling import PairConfig, sample_pair

from train.backbones import build_backbone
from train.config import ConfigError, load_config
from train.losses import byol_loss
from train.methods import METHODS, build_method
from train.model import CSTPModel
from train.pretext import TASKS

TINY = ["data.shards=x", "model.width=0.125", "data.clip_len=8", "data.out_size=32", "data.rates=[1,2]",
        "model.method_params={proj_dim: 16, hidden_dim: 32}"]


def batch(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Random clips with the geometry of pairs the sampler draws (TINY's: rates [1, 2], 5 overlaps)."""
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(b, 3, 8, 32, 32, generator=g), torch.randn(b, 3, 8, 32, 32, generator=g)
    rng = np.random.default_rng(seed)
    pc = PairConfig(clip_len=8, rates=(1, 2))
    return x1, x2, geometry([sample_pair(100, 64, 86, pc, rng) for _ in range(b)])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_declares_its_parameters_and_trains(name):
    params = METHODS[name].Params
    assert dataclasses.is_dataclass(params) and {"proj_dim", "hidden_dim"} <= {f.name for f in dataclasses.fields(params)}
    model = CSTPModel(load_config(None, [*TINY, f"model.method={name}"]))
    total, losses, accs = model(*batch())
    assert set(losses) == {"contrastive", *TASKS} and set(accs) == set(TASKS)
    assert set(TASKS) == {"rate", "rotation", "overlap_spatial", "overlap_temporal"}
    total.backward()
    assert torch.isfinite(total)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "fc." not in n), name


def test_the_default_is_byol_with_the_authors_512_4096_512_projector_and_predictor():
    cfg = load_config(None, ["data.shards=x"])
    assert cfg.model.method == "byol" and cfg.model.backbone == "r21d_10"
    m = build_method("byol", build_backbone("r21d_10"), **cfg.model.method_params)
    dims = lambda seq: [(l.in_features, l.out_features) for l in seq if isinstance(l, torch.nn.Linear)]
    assert dims(m.projector) == [(512, 4096), (4096, 512)]
    assert dims(m.predictor) == [(512, 4096), (4096, 512)]
    assert m.params.momentum == 0.996 and not m.params.momentum_cosine


def test_byol_sums_the_regression_loss_over_both_directions():
    torch.manual_seed(0)
    m = build_method("byol", build_backbone("r21d_10", 0.125), proj_dim=8, hidden_dim=16)
    x1, x2, _ = batch()
    loss, h1, h2 = m(x1, x2)
    with torch.no_grad():
        p1, p2 = m.predictor(m.projector(h1)), m.predictor(m.projector(h2))
        t1, t2 = m.target_projector(m.target_backbone(x1)), m.target_projector(m.target_backbone(x2))
        cos = lambda a, b: (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
        authors = ((2 - 2 * cos(p1, t2)) + (2 - 2 * cos(p2, t1))).mean()     # r21d_byol.py's _cal_loss, mean
    assert torch.isclose(loss, authors, atol=1e-5)
    assert torch.isclose(loss, byol_loss(p1, t2) + byol_loss(p2, t1), atol=1e-5)


def test_total_loss_is_eq5_with_the_authors_weights():
    torch.manual_seed(1)
    model = CSTPModel(load_config(None, TINY))
    total, losses, _ = model(*batch())
    w = load_config(None, TINY).loss
    assert (w.contrastive, w.rate, w.rotation, w.overlap_spatial, w.overlap_temporal) == (0.1, 1, 1, 1, 1)
    expect = (0.1 * losses["contrastive"] + losses["rate"] + losses["rotation"] + losses["overlap_spatial"]
              + losses["overlap_temporal"])
    assert torch.isclose(total, expect)


def test_a_zero_weight_drops_its_head_and_its_term():
    model = CSTPModel(load_config(None, [*TINY, "loss.overlap_temporal=0", "loss.rotation=0"]))
    assert list(model.heads) == ["overlap_spatial", "rate"]
    total, losses, _ = model(*batch())
    assert set(losses) == {"contrastive", "rate", "overlap_spatial"}
    assert torch.isclose(total, 0.1 * losses["contrastive"] + losses["rate"] + losses["overlap_spatial"])


def test_method_params_merge_on_the_chosen_methods_defaults():
    cfg = load_config(None, ["data.shards=x", "model.method=moco", "model.method_params.queue_size=65536"])
    defaults = dataclasses.asdict(METHODS["moco"].Params())
    assert cfg.model.method_params == {**defaults, "queue_size": 65536}
    with pytest.raises(ConfigError, match=r"unknown config key 'model.method_params.queue_size'.*'momentum'"):
        load_config(None, ["data.shards=x", "model.method_params.queue_size=5"])     # BYOL has no queue
    with pytest.raises(ConfigError, match=r"model.method_params.temperature=-1.0 .*must be > 0"):
        load_config(None, ["data.shards=x", "model.method=simclr", "model.method_params.temperature=-1"])
