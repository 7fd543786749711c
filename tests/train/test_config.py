"""train.config: typed keys, deep merges, one-line errors naming key, value and what is allowed, and
train/pretrain.py --print-config on every shipped config."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from train.augment import AugmentConfig
from shards.errors import InputError
from shards.sampling import PairConfig
from tests.conftest import ROOT
from train.config import ConfigError, config_from_dict, dump_yaml, load_config, require_pretraining, to_dict
from train.config_schema import AUGMENT_RULES
from train.pretrain import main as pretrain

CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))


def err(*overrides: str, path: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, ["data.shards=x", *overrides])
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_lr_written_1e_4_is_the_number():
    assert load_config(None, ["data.shards=x", "optim.lr=1e-4"]).optim.lr == 1e-4


def test_lr_written_1e_4_in_a_yaml_file_is_the_number(tmp_path):
    (tmp_path / "c.yaml").write_text("optim: {lr: 1e-4}\n")
    assert load_config(str(tmp_path / "c.yaml"), ["data.shards=x"]).optim.lr == 1e-4


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
    assert cfg.data.batch_size == 3 and cfg.data.clip_len == PairConfig().clip_len
    assert cfg.model.method_params["proj_dim"] == 64 and cfg.model.method_params["momentum"] == 0.99
    assert cfg.model.method_params["hidden_dim"] == 4096


def test_the_augment_and_pair_configs_are_built_from_the_config_with_their_own_defaults():
    cfg = load_config(None, ["data.shards=x"])
    assert isinstance(cfg.augment, AugmentConfig) and cfg.augment == AugmentConfig()   # every field a key
    assert cfg.data.pair == PairConfig() and cfg.data.pair is cfg.data.pair            # built once
    cfg = load_config(None, ["data.shards=x", "data.aspect_range=[0.5,2]", "data.n_spatial_overlaps=3",
                             "data.n_temporal_overlaps=4", "augment.mean=[0.5,0.5,0.5]", "augment.std=[0.25,0.25,0.25]"])
    assert cfg.data.pair.aspect_range == (0.5, 2.0) and cfg.data.pair.spatial_overlaps == (0.333333, 0.666667, 1.0)
    assert cfg.data.pair.temporal_overlaps == (0.25, 0.5, 0.75, 1.0)
    assert tuple(cfg.augment.mean) == (0.5,) * 3 and tuple(cfg.augment.std) == (0.25,) * 3


# augment.<key>: a value out of its range, and what the one line must say is allowed
AUGMENT_BAD = {"p_base": (1.5, "[0, 1]"), "p_jitter": (-0.1, "[0, 1]"), "p_gray": (2, "[0, 1]"), "p_blur": (1.01, "[0, 1]"),
               "p_rotate": (-1, "[0, 1]"), "p_flip": (1.5, "[0, 1]"), "brightness": (1.5, "in [0, 1]"),
               "contrast": (-0.2, "in [0, 1]"), "saturation": (3, "in [0, 1]"), "hue": (0.6, "in [0, 0.5]"),
               "blur_sigma": ("[2.0,0.1]", "0 < lo <= hi"), "max_degrees": (200, "in [0, 180]"),
               "mean": ("[0.5,0.5,1.5]", "three channel means in [0, 1]"), "std": ("[0.2,0.0,0.2]", "three channel standard deviations")}
DATA_BAD = {"aspect_range": ("[0,1]", "0 < lo <= hi"), "area_range": ("[0.5,1.5]", "hi <= 1"),
            "n_spatial_overlaps": (1, "2..16"), "n_temporal_overlaps": (17, "2..16"), "rates": ("[0]", "positive"),
            "rotations": ("[45]", "multiples of 90"), "clip_len": (1, ">= 2"), "out_size": (0, ">= 1")}


def test_every_augmentation_key_has_a_range():
    keys = {k for k, v in AugmentConfig.__dataclass_fields__.items() if v.type not in (bool, "bool")}
    assert keys == set(AUGMENT_RULES) == set(AUGMENT_BAD)


@pytest.mark.parametrize("section, key, value, allowed",
                         [("augment", k, v, a) for k, (v, a) in AUGMENT_BAD.items()]
                         + [("data", k, v, a) for k, (v, a) in DATA_BAD.items()])
def test_an_augmentation_value_out_of_range_fails_at_load_with_one_line(section, key, value, allowed):
    msg = err(f"{section}.{key}={value}")
    assert f"{section}.{key}=" in msg and allowed in msg, msg


def test_a_tuple_of_the_wrong_length_names_the_key_and_the_type():
    msg = err("augment.mean=[0.5,0.5]")
    assert "augment.mean=[0.5, 0.5]" in msg and "tuple[float, float, float]" in msg, msg


def test_more_temporal_candidates_than_a_clip_can_tell_apart_fail_at_load():
    assert "temporal overlaps" in err("data.clip_len=4", "data.n_temporal_overlaps=6")


def test_a_config_of_an_earlier_version_reads_with_its_keys_upgraded():
    old = {"data": {"n_overlaps": 3, "rates": [1, 2]}, "loss": {"rate": 0.5}}
    cfg = config_from_dict(old)
    assert (cfg.data.n_spatial_overlaps, cfg.data.n_temporal_overlaps, cfg.loss.rate) == (3, 3, 0.5)
    assert old["data"] == {"n_overlaps": 3, "rates": [1, 2]}         # the caller's dict is left as it was
    with pytest.raises(ConfigError, match="unknown config key 'data.n_overlaps'"):
        load_config(None, ["data.n_overlaps=3"])                       # a user's config must use today's keys


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
    assert printed == to_dict(load_config(str(ROOT / path), ["data.shards=x"]))


def test_a_bad_value_exits_2_with_one_line_and_no_traceback():
    r = subprocess.run([sys.executable, "train/pretrain.py", "--config", "configs/tiny_cpu.yaml", "data.shards=x",
                        "data.batch_size=0"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.batch_size=0" in lines[0] and ">= 1" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_negative_seed_and_an_unknown_split_are_one_line():
    with pytest.raises(ConfigError, match=r"^config key train.seed=-1 is not allowed: must be >= 0$"):
        load_config(None, ["data.shards=x", "train.seed=-1"])
    from shards.index import UnknownSplit
    from shards.errors import InputError
    err = UnknownSplit("split '7' is not in this index; it has ['1', '2', '3']")
    assert isinstance(err, InputError) and isinstance(err, KeyError) and str(err).startswith("split '7' is not")
