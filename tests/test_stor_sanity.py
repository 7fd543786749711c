"""bench/stor_sanity.py: the Wilson interval, and a smoke run (a few steps) that writes the JSON the
README and issue 18 quote: each head's held-out accuracy, chance and 95% interval."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scipy.stats import binomtest

from bench.stor_sanity import wilson
from tests.conftest import ROOT


@pytest.mark.parametrize("hits,n", [(0, 20), (7, 20), (20, 20), (130, 512)])
def test_wilson_interval_holds_the_estimate_and_is_close_to_the_exact_one(hits, n):
    lo, hi = wilson(hits, n)
    assert 0 <= lo <= hits / n <= hi <= 1
    exact = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert abs(lo - exact.low) < 1e-9 and abs(hi - exact.high) < 1e-9


def test_bench_smoke_writes_each_heads_accuracy_against_chance(tmp_path):
    out = tmp_path / "sanity.json"
    r = subprocess.run([sys.executable, "bench/stor_sanity.py", "--steps", "2", "--pairs", "16", "--per-class", "2",
                        "--test-per-class", "1", "--frames", "24", "--work", str(tmp_path / "work"), "--json", str(out),
                        "data.out_size=32", "data.batch_size=4"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["steps"] == {"stor_only": 2, "full": 2, "full_rot025": 2} and res["wall_s"] > 0
    assert set(res["variants"]) == set(res["steps"])
    assert res["heads"] == res["variants"]["full_rot025"]["heads"] and res["heads_from"] == "full_rot025"
    # the variants differ in what they were asked to: the rotation term's weight is in each run's config
    assert [res["variants"][n]["config"]["loss"]["rotation"] for n in ("stor_only", "full", "full_rot025")] == [0, 1, 0.25]
    assert res["variants"]["stor_only"]["heads"]["rate"] is None      # off in the STOR-only run
    for name, chance in (("overlap_spatial", 0.25), ("overlap_temporal", 0.25), ("rate", 0.5), ("rotation", 0.25)):
        h = res["heads"][name]
        assert h["chance"] == chance and h["n"] == (32 if name in ("rate", "rotation") else 16)
        assert h["ci95"][0] <= h["accuracy"] <= h["ci95"][1]
        assert f"  {name:17s} {100 * h['accuracy']:5.1f}%" in r.stdout


def test_overlap_heads_see_the_concatenation_by_default_and_the_comparison_on_request():
    import torch

    from train.config import load_config
    from train.heads import PAIR_INPUTS
    from train.model import CSTPModel

    h1, h2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    assert PAIR_INPUTS["cat"][1](h1, h2).tolist() == [[1.0, -2.0, 3.0, 1.0]]                  # the paper's
    assert PAIR_INPUTS["compare"][1](h1, h2).tolist() == [[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]]
    base = ["data.shards=x", "model.width=0.125"]
    assert load_config(str(ROOT / "configs/tiny_cpu.yaml"), base).model.pair_input == "cat"
    batch = {"overlap_s": torch.tensor([0, 3]), "overlap_t": torch.tensor([1, 2]), "rate": torch.tensor([0, 1]),
             "rot1": torch.tensor([0, 1]), "rot2": torch.tensor([2, 3])}
    for form, width in (("cat", 2), ("compare", 4)):
        m = CSTPModel(load_config(str(ROOT / "configs/tiny_cpu.yaml"), [*base, f"model.pair_input={form}"]))
        d = m.backbone.feature_dim
        assert m.heads["overlap_spatial"][0].in_features == m.heads["overlap_temporal"][0].in_features == width * d
        assert m.heads["rate"][0].in_features == d                                   # per-clip heads unchanged
        losses, _ = m.heads(torch.randn(2, d), torch.randn(2, d), batch)             # the head takes its input
        assert set(losses) == {"overlap_spatial", "overlap_temporal", "rate", "rotation"}
