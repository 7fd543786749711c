"""train.losses, heads and momentum rules against brute-force references."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from train.backbones import build_backbone
from train.config import load_config
from train.heads import PretextHeads
from train.losses import byol_loss, info_nce, negative_cosine, nt_xent
from train.methods import BYOL, build_method, ema_
from train.pretext import TASKS, enabled


def brute_nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = torch.stack([z[i] @ z[j] / t for j in range(2 * n) if j != i])
        js = [j for j in range(2 * n) if j != i]
        total += -(z[i] @ z[pos] / t - torch.logsumexp(sims, 0))
        assert pos in js
    return total / (2 * n)


def test_nt_xent_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert torch.allclose(nt_xent(z1, z2, 0.3), brute_nt_xent(z1, z2, 0.3), atol=1e-5)


def test_nt_xent_with_gathered_negatives_is_the_global_loss_split_by_rank():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    full = nt_xent(z1, z2, 0.2)
    parts = [nt_xent(z1[s:s + 3], z2[s:s + 3], 0.2, z1, z2, offset=s) for s in (0, 3)]
    assert torch.allclose(full, sum(parts) / 2, atol=1e-6)


def test_info_nce_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    q, k, queue = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(8, 5, generator=g)
    qn, kn, Q = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    ref = torch.stack([-torch.log_softmax(torch.cat([(qn[i] @ kn[i]).view(1), Q @ qn[i]]) / 0.2, 0)[0] for i in range(3)]).mean()
    assert torch.allclose(info_nce(q, k, queue, 0.2), ref, atol=1e-6)


def test_byol_and_simsiam_losses():
    p, z = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert torch.isclose(byol_loss(p, z), torch.tensor(2.0))
    assert torch.isclose(byol_loss(p, p * 3), torch.tensor(0.0), atol=1e-6)
    assert torch.isclose(negative_cosine(p, -p), torch.tensor(1.0))
    pz = torch.randn(4, 3, requires_grad=True)
    zz = torch.randn(4, 3, requires_grad=True)
    negative_cosine(pz, zz).backward()
    assert zz.grad is None and pz.grad is not None        # stop-gradient on the target side


def test_byol_target_starts_as_a_copy_and_moves_by_the_ema_rule():
    m = build_method("byol", build_backbone("r21d_10", 0.125), proj_dim=8, hidden_dim=16, momentum=0.9,
                     momentum_cosine=True)
    for t, o in zip(m.target_backbone.parameters(), m.backbone.parameters()):
        assert torch.equal(t, o)
    before = [t.clone() for t in m.target_backbone.parameters()]
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    m.on_step(0.25)
    tau = 1 - 0.1 * (math.cos(math.pi * 0.25) + 1) / 2
    assert math.isclose(m.tau, tau)
    for b, t, o in zip(before, m.target_backbone.parameters(), m.backbone.parameters()):
        assert torch.allclose(t, tau * b + (1 - tau) * o, atol=1e-6)
    assert BYOL.tau_at(0.99, 1.0) == 1.0 and BYOL.tau_at(0.99, 0.0) == 0.99


def test_byol_momentum_is_constant_by_default_as_the_authors_keep_it():
    m = build_method("byol", build_backbone("r21d_10", 0.125), proj_dim=8, hidden_dim=16)
    for progress in (0.0, 0.5, 1.0):
        m.on_step(progress)
        assert m.tau == 0.996


def test_moco_queue_wraps_for_any_batch_size():
    m = build_method("moco", build_backbone("r21d_10", 0.125), proj_dim=4, queue_size=5)
    keys = torch.arange(12, dtype=torch.float32).view(3, 4) + 1
    m.enqueue(keys)
    m.enqueue(keys * -1)
    assert int(m.queue_ptr) == 1
    expect = F.normalize(torch.cat([keys, -keys]), dim=1)   # 6 keys into 5 slots
    assert torch.allclose(m.queue[0], expect[5])            # the 6th key wrapped to slot 0
    assert torch.allclose(m.queue[1:5], expect[1:5])


def test_ema_rule():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa = a.weight.detach().clone()
    ema_(a, b, 0.75)
    assert torch.allclose(a.weight, 0.75 * wa + 0.25 * b.weight)


FOUR = ["data.shards=x", "data.rates=[1,2,4,8]", "data.n_spatial_overlaps=4", "data.n_temporal_overlaps=4"]


def identity_heads(*overrides: str) -> PretextHeads:
    """Heads whose per-clip MLPs pass a non-negative input through (eval mode, identity weights, fresh BN)."""
    cfg = load_config(None, [*FOUR, *overrides])
    heads = PretextHeads(enabled(cfg), torch.nn.Identity(), 4, cfg).eval()
    with torch.no_grad():
        for name in ("rate", "rotation"):
            if name in heads:
                for lin in (heads[name][0], heads[name][3]):
                    lin.weight.copy_(torch.eye(4))
                    lin.bias.zero_()
    return heads


def test_heads_take_each_label_from_its_own_clip():
    # Heads that copy their input's class: accuracy 1 only if each target is the right clip's label.
    heads = identity_heads()
    batch = {"rate": torch.tensor([0, 3, 1]), "rot1": torch.tensor([2, 0, 1]), "rot2": torch.tensor([1, 3, 3]),
             "overlap_s": torch.tensor([0, 1, 2]), "overlap_t": torch.tensor([3, 2, 1])}
    h1 = F.one_hot(batch["rot1"], 4).float() * 10
    h2 = F.one_hot(batch["rot2"], 4).float() * 10
    losses, accs = heads(h1, h2, batch)
    assert accs["rotation"] == 1.0
    swapped = heads(h2, h1, batch)[1]
    assert swapped["rotation"] < 1.0
    h = F.one_hot(batch["rate"], 4).float() * 10
    assert heads(h, h, batch)[1]["rate"] == 1.0
    off = identity_heads("loss.rate=0", "loss.overlap_spatial=0")
    losses, _ = off(h1, h2, batch)
    assert set(losses) == {"rotation", "overlap_temporal"}


def test_per_clip_terms_are_summed_over_the_two_clips_as_the_authors_sum_them():
    heads = identity_heads()
    g = torch.Generator().manual_seed(3)
    h1, h2 = torch.rand(5, 4, generator=g), torch.rand(5, 4, generator=g)
    batch = {k: torch.randint(0, 4, (5,), generator=g) for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t")}
    losses, _ = heads(h1, h2, batch)
    with torch.no_grad():
        rot = F.cross_entropy(heads["rotation"](h1), batch["rot1"]) + F.cross_entropy(heads["rotation"](h2), batch["rot2"])
        rate = F.cross_entropy(heads["rate"](h1), batch["rate"]) + F.cross_entropy(heads["rate"](h2), batch["rate"])
        pair = torch.cat([h1, h2], 1)
        spa = F.cross_entropy(heads["overlap_spatial"](pair), batch["overlap_s"])
        tem = F.cross_entropy(heads["overlap_temporal"](pair), batch["overlap_t"])
    assert torch.isclose(losses["rotation"], rot) and torch.isclose(losses["rate"], rate)
    assert torch.isclose(losses["overlap_spatial"], spa) and torch.isclose(losses["overlap_temporal"], tem)


class WithHead(torch.nn.Module):
    """A backbone that brings its own pretext head (train.backbones: make_head)."""

    def make_head(self, in_dim: int, n_classes: int) -> torch.nn.Module:
        return torch.nn.Linear(in_dim, n_classes, bias=False)


def test_a_backbones_own_head_is_used_and_sized_per_task():
    cfg = load_config(None, FOUR)
    heads = PretextHeads(enabled(cfg), WithHead(), 6, cfg)
    sizes = {k: (h.in_features, h.out_features) for k, h in heads.items()}
    assert sizes == {"overlap_spatial": (12, 4), "overlap_temporal": (12, 4), "rate": (6, 4), "rotation": (6, 4)}
    mlp = PretextHeads(enabled(cfg), torch.nn.Identity(), 6, cfg)       # no make_head: the authors' MLP
    assert isinstance(mlp["rate"], torch.nn.Sequential) and mlp["overlap_temporal"][0].in_features == 12


def test_each_task_sizes_its_head_from_the_config_and_has_chance_one_over_its_classes():
    cfg = load_config(None, ["data.shards=x", "data.rates=[1,2,4]", "data.rotations=[0,180]",
                             "data.n_spatial_overlaps=3", "data.n_temporal_overlaps=6"])
    n = {k: t.n_classes(cfg) for k, t in TASKS.items()}
    assert n == {"rate": 3, "rotation": 2, "overlap_spatial": 3, "overlap_temporal": 6}
    assert {k: t.chance(cfg) for k, t in TASKS.items()} == {k: 1 / v for k, v in n.items()}
