"""train.pretext: a pretext task is one class in one module. A task defined here, in the test, is
registered and trained for two steps on the real clips without touching a project file; and the
temporal-overlap task stays named in few modules."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch

from tests.conftest import ROOT
from tests.train.test_pretrain import run
from train.checkpoint import load_checkpoint
from train.config import ConfigError, load_config
from train.pretext import TASKS, PretextTask, register, unregister


class ClipOrder(PretextTask):
    """Does clip 1 start before clip 2? A label from the pair's frame indices alone."""
    name = "clip_order"
    help = "weight of clip-order prediction"
    per_clip = False
    classes_from = "two classes: clip 1 first, or not"

    def n_classes(self, cfg) -> int:
        return 2

    def targets(self, batch):
        return (batch["idx1"][:, 0] < batch["idx2"][:, 0]).long()


@pytest.fixture
def clip_order():
    task = register(ClipOrder())
    yield task
    unregister(task.name)


def test_a_task_defined_in_a_test_trains_two_steps(clip_order, real_ucf_shards, tmp_path):
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=2", "loss.clip_order=0.5") == 0
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "event" not in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["loss_clip_order"] > 0 and 0 <= r["acc_clip_order"] <= 1 for r in steps)
    ck = load_checkpoint(out / "ckpt-00000002.pt")
    assert ck["config"]["loss"]["clip_order"] == 0.5
    head = {k: v for k, v in ck["model"].items() if k.startswith("heads.clip_order.")}
    linear = [v for k, v in head.items() if k.endswith("weight") and v.dim() == 2]
    assert linear and linear[-1].shape[0] == 2                      # the head's output: two classes
    assert all(torch.isfinite(v).all() for v in head.values())


def test_a_registered_task_has_a_weight_key_and_is_off_at_weight_0(clip_order):
    cfg = load_config(None, ["data.shards=x"])
    assert cfg.loss.clip_order == 1.0 and list(TASKS)[-1] == "clip_order"
    assert "loss.clip_order=-1.0" in _error(["loss.clip_order=-1"])


def test_unregistered_the_key_is_unknown_again():
    assert "clip_order" not in TASKS
    assert "unknown config key 'loss.clip_order'" in _error(["loss.clip_order=1"])


def test_names_are_unique_and_not_the_contrastive_term():
    with pytest.raises(ValueError, match="registered already"):
        register(type("Other", (ClipOrder,), {"name": "rate"})())
    with pytest.raises(ValueError, match="other than 'contrastive'"):
        register(type("Ctr", (ClipOrder,), {"name": "contrastive"})())


def _error(overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.shards=x", *overrides])
    return str(info.value)


def test_at_most_five_modules_name_the_temporal_overlap_task():
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    naming = [f for f in files if not f.startswith("tests/")
              and re.search(r"overlap_t\b|overlap_temporal|temporal_overlaps", (ROOT / f).read_text())]
    assert len(naming) <= 5, naming
