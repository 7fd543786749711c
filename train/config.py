"""Pretraining configuration: defaults, a YAML file on top, then ``section.key=value`` overrides.

Every key must be one of the defaults' keys: a typo fails at start with the list of valid keys, and a
backbone or method name that no registry knows fails with the list of valid names.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from shards.errors import InputError

DEFAULTS: dict = {
    "data": {
        "shards": None,               # shard set folder or URL (required)
        "split": "1",                 # train on that split's train videos; "all": every ok video
        "batch_size": 8,              # per rank
        "num_workers": 4,
        "clip_len": 16,
        "out_size": 112,
        "rates": [1, 2, 4, 8],
        "rotations": [0, 90, 180, 270],
        "n_overlaps": 5,              # N candidates for both overlap rates (paper's Table 4)
        "area_range": [0.1, 0.35],
        "shuffle_buffer": 32,
        "skip_errors": False,
        "max_skip_fraction": 0.01,    # with skip_errors: stop once more than this fraction of an epoch is skipped
        "io_timeout": 60.0,           # seconds per remote read
        "io_retries": 3,              # retries of transient remote errors
    },
    "model": {
        "backbone": "r21d_10",
        "width": 1.0,
        "method": "simclr",
        "method_params": {"proj_dim": 128, "temperature": 0.1},
        "sync_bn": True,
    },
    "loss": {                          # paper eq. 5: weights 0 switch a term off
        "contrastive": 1.0,
        "rate": 1.0,
        "rotation": 1.0,
        "overlap": 1.0,
        "overlap_spatial": True,
        "overlap_temporal": True,
    },
    "augment": {"p_jitter": 0.8, "p_gray": 0.2, "p_blur": 0.5, "p_flip": 0.5, "p_rotate": 0.3, "max_degrees": 10.0},
    "optim": {
        "name": "sgd",
        "lr": 0.1,                    # per 256 clips of global batch (scaled linearly)
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "warmup_epochs": 1.0,
        "clip_grad": 5.0,
    },
    "train": {
        "epochs": 100,
        "max_steps": None,            # stop early (smoke tests, benchmarks)
        "seed": 0,
        "bf16": True,                 # autocast on GPU only
        "log_every": 10,
        "ckpt_every": 1000,
        "keep_ckpts": 3,
        "out": "runs/cstp",
        "tensorboard": True,
        "compile": None,              # torch.compile the model; None: on where CUDA is used
        "channels_last": None,        # channels_last_3d memory format; None: on where CUDA is used
        "max_bad_steps": 0,           # non-finite steps skipped before the run stops (0: stop at the first)
    },
}


class ConfigError(InputError, ValueError):
    pass


def _merge(base: dict, new: dict, where: str) -> None:
    for k, v in new.items():
        if k not in base:
            raise ConfigError(f"unknown config key '{where}{k}'; valid keys here: {sorted(base)}")
        if isinstance(base[k], dict) and k != "method_params":
            if not isinstance(v, dict):
                raise ConfigError(f"config key {where}{k} must be a mapping")
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v


def parse_override(text: str) -> dict:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    path, value = text.split("=", 1)
    out: dict = {}
    cur = out
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = yaml.safe_load(value)
    return out


def load_config(path: str | None = None, overrides: list[str] = ()) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path} not found")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        _merge(cfg, data, "")
    for o in overrides:
        _merge(cfg, parse_override(o), "")
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    from .backbones import BACKBONES
    from .methods import METHODS
    from .optim import OPTIMIZERS

    m = cfg["model"]
    if m["backbone"] not in BACKBONES:
        raise ConfigError(f"unknown backbone {m['backbone']!r}; valid: {sorted(BACKBONES)}")
    if m["method"] not in METHODS:
        raise ConfigError(f"unknown method {m['method']!r}; valid: {sorted(METHODS)}")
    if cfg["optim"]["name"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg['optim']['name']!r}; valid: {sorted(OPTIMIZERS)}")
    if not cfg["data"]["shards"]:
        raise ConfigError("data.shards is required (a shard set folder or URL)")
    l = cfg["loss"]
    if all(l[k] <= 0 for k in ("contrastive", "rate", "rotation", "overlap")):
        raise ConfigError("every loss term is off; enable at least one of loss.contrastive/rate/rotation/overlap")


def require_pretraining(cfg: dict, source: str | None = None) -> None:
    """Refuse a config that describes no pretraining (e.g. an ablation row trained from scratch)."""
