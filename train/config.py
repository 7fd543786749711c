"""Pretraining configuration: typed defaults (the structured schema in train/config_schema.py), a
YAML file deep-merged on top, then ``section.key=value`` overrides (values parsed by OmegaConf).
:func:`load_config` returns the ``Config`` dataclass; code reads attributes (``cfg.data.rates``);
the sampler's config is ``cfg.data.pair``, the augmentation's ``cfg.augment``.

Every key, type and range is checked at start: an unknown key, a value of the wrong type or out of
range fails with one line that names the key, the value and what is allowed (:class:`ConfigError`,
exit 2). ``model.method_params`` is checked against the chosen method's own parameter dataclass
(``train.methods``) and filled with its defaults. The defaults are the paper's full scheme as the
authors train it (README, "Deviations from the paper", says where we differ).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from pathlib import Path
from typing import get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from shards.errors import InputError, one_line

from .backbones import BACKBONES
from .config_schema import AUGMENT_RULES, LEGACY_KEYS, config_class
from .methods import METHODS
from .pretext import enabled


class ConfigError(InputError, ValueError):
    pass


def _schema():
    return OmegaConf.structured(config_class())


def _type_at(key: str, schema: type) -> str:
    cls, t = schema, None
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        hints = get_type_hints(cls) if cls else {}
        if part not in hints:
            break
        t = hints[part]
        cls = t if dataclasses.is_dataclass(t) else None
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


def _merge(base, src, where: str, prefix: str = "", fallback_key: str = "?", schema: type | None = None):
    """OmegaConf.merge, its errors as one line naming the key (``prefix`` + OmegaConf's) and value."""
    try:
        return OmegaConf.merge(base, src)
    except (OmegaConfBaseException, TypeError) as exc:      # TypeError: a list merged onto a mapping
        key = getattr(exc, "full_key", None) or fallback_key
        if isinstance(exc, ConfigKeyError):
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(base, parent) if parent else base
            hint = did_you_mean(f"{prefix}{key}", prefix, schema)
            raise ConfigError(f"{where}unknown config key '{prefix}{key}'{hint}; valid keys here: "
                              f"{sorted(node.keys())}") from None
        try:
            value = OmegaConf.select(src, key)
        except OmegaConfBaseException:
            value = "?"
        raise ConfigError(f"{where}config key {prefix}{key}={value!r}: {one_line(getattr(exc, 'msg', None) or exc)}; "
                          f"expected {_type_at(key, schema or config_class())}") from None


def known_keys(schema: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of ``schema`` (default: the Config), sections included: ``optim``, ``optim.lr``..."""
    keys = []
    for name, t in get_type_hints(schema or config_class()).items():
        keys.append(f"{prefix}{name}")
        if dataclasses.is_dataclass(t):
            keys += known_keys(t, f"{prefix}{name}.")
    return keys


def did_you_mean(key: str, prefix: str = "", schema: type | None = None) -> str:
    """'; did you mean optim.lr?' for ``train.lr``: a known key with the same last part (a key put in
    the wrong section) and the close spellings (difflib) of the last part within its section; '' when
    nothing is close."""
    keys = known_keys(schema, prefix)
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    close = [k for k in keys if k.rpartition(".")[2] == leaf and k != key]
    close += [siblings[s] for s in difflib.get_close_matches(leaf, list(siblings), n=2, cutoff=0.6)]
    close = list(dict.fromkeys(close))[:2]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _load_yaml(path: str):
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = OmegaConf.load(p)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if not OmegaConf.is_dict(data):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data, model, loss, ...)")
    return data


def _finish(cfg):
    """The merged DictConfig as a checked Config."""
    model = cfg.model
    model.method_params = method_params(model.method, OmegaConf.to_container(model.method_params), model.backbone)
    out = OmegaConf.to_object(cfg)
    validate(out)
    return out


def load_config(path: str | None = None, overrides: list[str] = ()):
    """Defaults, then the YAML file, then each override: the checked ``Config``."""
    cfg = _schema()
    if path:
        cfg = _merge(cfg, _load_yaml(path), f"{path}: ")
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise ConfigError(f"override {o!r} is not of the form section.key=value")
        cfg = _merge(cfg, OmegaConf.from_dotlist([o]), "", fallback_key=o.split("=", 1)[0])
    return _finish(cfg)


def upgrade(d: dict) -> dict:
    """A config dict of an earlier version (a run folder's config.yaml, a checkpoint's) in today's keys."""
    d = copy.deepcopy(d)
    for old, new in LEGACY_KEYS.items():
        section, key = old.split(".")
        if key in d.get(section, {}):
            value = d[section].pop(key)
            for n in new:
                d[section].setdefault(n.split(".")[1], value)
    return d


def config_from_dict(d: dict, where: str = "") -> object:
    """The checked Config of a plain dict (a checkpoint's or a run folder's), earlier keys upgraded."""
    return _finish(_merge(_schema(), OmegaConf.create(upgrade(d)), where))


def to_dict(cfg) -> dict:
    """``cfg`` as the plain dict its YAML or JSON reads back as (checkpoints hold this)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def method_params(method: str, given: dict, backbone: str | None = None) -> dict:
    """``given`` deep-merged on the defaults of ``method``'s parameter dataclass, with the sizes the
    authors use with ``backbone`` in between (its ``METHOD_DEFAULTS``), checked."""
    if method not in METHODS:
        raise ConfigError(f"model.method: unknown method {method!r}; valid: {sorted(METHODS)}")
    schema = METHODS[method].Params
    authors = BACKBONES[backbone].METHOD_DEFAULTS.get(method, {}) if backbone in BACKBONES else {}
    defaults = OmegaConf.merge(OmegaConf.structured(schema), authors)
    merged = _merge(defaults, OmegaConf.create(given), f"method {method}: ", "model.method_params.",
                    schema=schema)
    params = OmegaConf.to_container(merged)
    for k, v in params.items():
        # every numeric method parameter is a size, a temperature or an EMA rate
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (v <= 0 or ("momentum" in k and v > 1)):
            allowed = "in (0, 1]" if "momentum" in k else "> 0"
            raise ConfigError(f"config key model.method_params.{k}={v!r} is out of range for {method}: must be {allowed}")
    return _plain(params)


def _value(v):
    return list(v) if isinstance(v, tuple) else v


def _check_rules(section, where: str, rules: dict | None = None) -> None:
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        rule = rules.get(f.name) if rules is not None else f.metadata.get("rule")
        if dataclasses.is_dataclass(v):
            _check_rules(v, f"{where}{f.name}.", AUGMENT_RULES if f.name == "augment" else None)
        elif rule is not None and v is not None and not rule.ok(v):
            raise ConfigError(rule.error(f"{where}{f.name}", _value(v)))


def validate(cfg) -> None:
    _check_rules(cfg, "")
    try:
        cfg.data.pair          # the sampler's own checks (e.g. overlap candidates that fit clip_len)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config section data: {one_line(exc)}") from None
    for task in enabled(cfg):
        problem = task.check(cfg)
        if problem:
            raise ConfigError(problem)
    weights = dataclasses.asdict(cfg.loss)
    if cfg.pretrain and not any(v > 0 for v in weights.values()):
        raise ConfigError("every loss weight is 0: enable one of loss." + "/".join(weights)
                          + ", or set pretrain: false for a row trained from scratch (Table 1 rows 1-4)")


def dump_yaml(cfg) -> str:
    """``cfg`` as YAML that load_config reads back to the same config."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def require_pretraining(cfg, source: str | None = None) -> None:
    """What pretraining needs beyond a valid config (evaluation reads any config without them): a
    config that describes pretraining (not a row of the paper trained from scratch) and a shard set."""
    if cfg.pretrain:
        if not cfg.data.shards:
            raise ConfigError("config key data.shards=None: a shard set folder or URL is required to pretrain, "
                              "e.g. data.shards=out/shards/ucf101")
        return
    p, name = cfg.paper, source or "this config"
    what = f"Table {p.table} row {p.row}" if p.table else "pretrain: false"
    raise ConfigError(f"{name} is {what} (trained from scratch, no pretraining): run eval/finetune.py "
                      f"--config {name} --ckpt none")
