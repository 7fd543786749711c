"""train.config: typed keys, deep merges, one-line errors naming key, value and what is allowed, and
train/pretrain.py --print-config on every shipped config."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from shards.augment import AugmentConfig
from shards.errors import InputError
from shards.sampling import PairConfig
from tests.conftest import ROOT
from train.config import ConfigError, dump_yaml, load_config, require_pretraining
from train.pretrain import main as pretrain

CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))


def err(*overrides: str, path: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, ["data.shards=x", *overrides])
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_lr_written_1e_4_is_the_number():
    assert load_config(None, ["data.shards=x", "optim.lr=1e-4"])["optim"]["lr"] == 1e-4


def test_lr_written_1e_4_in_a_yaml_file_is_the_number(tmp_path):
    (tmp_path / "c.yaml").write_text("optim: {lr: 1e-4}\n")
    assert load_config(str(tmp_path / "c.yaml"), ["data.shards=x"])["optim"]["lr"] == 1e-4


@pytest.mark.parametrize("override, needles", [
    ("data.batch_size=0", ["data.batch_size=0", ">= 1"]),
    ("train.ckpt_every=0", ["train.ckpt_every=0", ">= 1"]),
    ("optim.lr=-0.1", ["optim.lr=-0.1", "> 0"]),
    ("augment.p_flip=1.5", ["augment.p_flip=1.5", "[0, 1]"]),
    ("loss.rate=-1", ["loss.rate=-1.0", ">= 0"]),
    ("data.rates=[1,0]", ["data.rates=[1, 0]", "positive integers"]),
    ("data.rates=fast", ["data.rates='fast'", "List[int]"]),
    ("data.batch_size=big", ["data.batch_size='big'", "int"]),
    ("optim.lrr=0.1", ["optim.lrr", "'lr'"]),
    ("model.method=swav", ["unknown method 'swav'", "'byol'", "'simsiam'"]),
    ("model.backbone=resnet50", ["model.backbone", "unknown backbone 'resnet50'", "'r3d_18'"]),
    ("optim.name=adam", ["unknown optimizer 'adam'", "'adamw'"]),
    ("data.split=null", ["data.split=None", "str"]),
])
def test_bad_values_fail_with_one_line_naming_key_value_and_what_is_allowed(override, needles):
    msg = err(override)
    for n in needles:
        assert n in msg, msg


def test_config_errors_are_input_errors():
    assert issubclass(ConfigError, InputError)


def test_a_bad_key_in_a_file_names_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {batch_sise: 4}\n")
    msg = err(path=str(tmp_path / "c.yaml"))
    assert str(tmp_path / "c.yaml") in msg and "data.batch_sise" in msg and "'batch_size'" in msg


def test_yaml_and_overrides_deep_merge_on_the_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {batch_size: 3}\nmodel: {method_params: {proj_dim: 64}}\n")
    cfg = load_config(str(tmp_path / "c.yaml"), ["data.shards=x", "model.method_params.momentum=0.99"])
    assert cfg["data"]["batch_size"] == 3 and cfg["data"]["clip_len"] == PairConfig().clip_len
    assert cfg["model"]["method_params"]["proj_dim"] == 64 and cfg["model"]["method_params"]["momentum"] == 0.99
    assert cfg["model"]["method_params"]["hidden_dim"] == 4096


def test_augment_section_is_augment_config_and_pair_defaults_come_from_pair_config():
    cfg = load_config(None, ["data.shards=x"])
    as_read = AugmentConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["augment"].items()})
    assert as_read == AugmentConfig()      # every field a key, with AugmentConfig's own default
    p = PairConfig()
    d = cfg["data"]
    assert (d["clip_len"], tuple(d["rates"]), tuple(d["rotations"]), tuple(d["area_range"]), d["n_overlaps"]) == \
        (p.clip_len, p.rates, p.rotations, p.area_range, len(p.temporal_overlaps))


def test_every_loss_off_is_pretrain_false_or_an_error_that_says_so():
    off = [f"loss.{k}=0" for k in ("contrastive", "rate", "rotation", "overlap_spatial", "overlap_temporal")]
    assert "pretrain: false" in err(*off)
    cfg = load_config(None, [*off, "pretrain=false"])     # no shard set needed either
    with pytest.raises(ConfigError, match=r"cfg.yaml is pretrain: false .*eval/finetune.py --config cfg.yaml --ckpt none"):
        require_pretraining(cfg, "cfg.yaml")


def test_pretraining_needs_a_shard_set_but_reading_a_config_does_not():
    cfg = load_config(str(ROOT / "configs/cstp_r21d_ucf101.yaml"))
    with pytest.raises(ConfigError, match=r"data.shards=None: .*required to pretrain"):
        require_pretraining(cfg, "configs/cstp_r21d_ucf101.yaml")
    require_pretraining(load_config(None, ["data.shards=x"]))


def test_a_pretext_term_needs_two_labels():
    assert "data.rates" in err("data.rates=[1]")
    load_config(None, ["data.shards=x", "data.rates=[1]", "loss.rate=0"])


def test_dump_yaml_reads_back_to_the_same_config(tmp_path):
    cfg = load_config(str(ROOT / "configs/tiny_cpu.yaml"), ["data.shards=x", "optim.lr=1e-4", "model.method=moco"])
    (tmp_path / "dumped.yaml").write_text(dump_yaml(cfg))
    assert load_config(str(tmp_path / "dumped.yaml")) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_every_config_passes_print_config(path, capsys):
    assert pretrain(["--print-config", "--config", str(ROOT / path), "data.shards=x"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == load_config(str(ROOT / path), ["data.shards=x"])


def test_a_bad_value_exits_2_with_one_line_and_no_traceback():
    r = subprocess.run([sys.executable, "train/pretrain.py", "--config", "configs/tiny_cpu.yaml", "data.shards=x",
                        "data.batch_size=0"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.batch_size=0" in lines[0] and ">= 1" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
