"""Pretraining configuration: typed defaults (OmegaConf structured configs), a YAML file deep-merged
on top, then ``section.key=value`` overrides (values parsed by OmegaConf).

Every key, type and range is checked at start: an unknown key, a value of the wrong type or out of
range fails with one line that names the key, the value and what is allowed (:class:`ConfigError`,
exit 2). ``model.method_params`` is checked against the chosen method's own parameter dataclass
(``train.methods``) and filled with its defaults. The defaults are the paper's full scheme as the
authors train it (README, "Deviations from the paper", says where we differ).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from shards.augment import AugmentConfig
from shards.errors import InputError, one_line
from shards.sampling import PairConfig, overlap_candidates

from .backbones import BACKBONES
from .methods import METHODS
from .optim import OPTIMIZERS


class ConfigError(InputError, ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    allowed: str                      # what the error says is allowed
    ok: Callable[[Any], bool]

    def error(self, key: str, value) -> str:
        return f"config key {key}={value!r} is not allowed: must be {self.allowed}"


@dataclass(frozen=True)
class Registry(Rule):
    kind: str = ""

    def error(self, key: str, value) -> str:
        return f"config key {key}: unknown {self.kind} {value!r}; valid: {self.allowed}"


AT_LEAST_1 = Rule(">= 1", lambda v: v >= 1)
POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
PROBABILITY = Rule("a probability in [0, 1]", lambda v: 0 <= v <= 1)
POSITIVE_INTS = Rule("a non-empty list of positive integers", lambda v: len(v) > 0 and all(x >= 1 for x in v))
RIGHT_ANGLES = Rule("a non-empty list of multiples of 90", lambda v: len(v) > 0 and all(x % 90 == 0 for x in v))
AREA = Rule("two fractions [lo, hi] with 0 < lo <= hi <= 1", lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1)


def registry(kind: str, names: dict) -> Rule:
    return Registry(str(sorted(names)), lambda v: v in names, kind)


def opt(default, help: str, rule: Rule | None = None):
    """A config field with its meaning (the README's key reference) and its allowed values."""
    meta = {"help": help, "rule": rule}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_PAIR = PairConfig()    # the sampler's defaults, not a second copy of them


@dataclass
class DataSection:
    shards: Optional[str] = opt(None, "shard set folder or URL (required to pretrain)")
    split: str = opt("1", 'train on this split\'s train videos; "all": every ok video')
    batch_size: int = opt(10, "clip pairs per rank (the authors: 60 in all, over 6 GPUs)", AT_LEAST_1)
    num_workers: int = opt(4, "loader processes per rank", NON_NEGATIVE)
    clip_len: int = opt(_PAIR.clip_len, "frames per clip", Rule(">= 2", lambda v: v >= 2))
    out_size: int = opt(112, "clip height and width after the crop", AT_LEAST_1)
    rates: List[int] = opt(list(_PAIR.rates), "playback rates (frame strides); [1]: no playback-rate augmentation",
                           POSITIVE_INTS)
    rotations: List[int] = opt(list(_PAIR.rotations), "rotation angles; [0]: no rotation augmentation", RIGHT_ANGLES)
    n_overlaps: int = opt(len(_PAIR.temporal_overlaps), "N candidates 1/N..1 for both overlap rates (Table 4)",
                          Rule("in 2..16", lambda v: 2 <= v <= 16))
    area_range: List[float] = opt(list(_PAIR.area_range), "crop area / frame area of clip 1", AREA)
    shuffle_buffer: int = opt(32, "samples in the streaming shuffle buffer", NON_NEGATIVE)
    skip_errors: bool = opt(False, "skip undecodable samples instead of stopping")
    max_skip_fraction: float = opt(0.01, "with skip_errors: stop once more than this fraction of an epoch is skipped",
                                   PROBABILITY)
    io_timeout: float = opt(60.0, "seconds per remote read", POSITIVE)
    io_retries: int = opt(3, "retries of transient remote errors", NON_NEGATIVE)


@dataclass
class ModelSection:
    backbone: str = opt("r21d_10", "backbone name", registry("backbone", BACKBONES))
    width: float = opt(1.0, "channel multiplier (0.125: the tiny CPU variants)", Rule("in (0, 4]", lambda v: 0 < v <= 4))
    method: str = opt("byol", "contrastive method", registry("method", METHODS))
    method_params: Dict[str, Any] = opt({}, "parameters of model.method (below); unset ones take its defaults")
    sync_bn: bool = opt(True, "batch norm statistics over every rank")


@dataclass
class LossSection:          # eq. 5 as the authors weight and sum it; 0 switches a term off
    contrastive: float = opt(0.1, "weight of the contrastive loss (BYOL: summed over both directions)", NON_NEGATIVE)
    rate: float = opt(1.0, "weight of playback-rate prediction (summed over both clips)", NON_NEGATIVE)
    rotation: float = opt(1.0, "weight of rotation prediction (summed over both clips)", NON_NEGATIVE)
    overlap_spatial: float = opt(1.0, "weight of spatial overlap-rate prediction", NON_NEGATIVE)
    overlap_temporal: float = opt(1.0, "weight of temporal overlap-rate prediction", NON_NEGATIVE)


@dataclass
class OptimSection:
    name: str = opt("sgd", "optimiser", registry("optimizer", OPTIMIZERS))
    lr: float = opt(0.128, "peak learning rate per 256 clips of global batch, scaled linearly "
                           "(the authors: 0.03 at 60)", POSITIVE)
    weight_decay: float = opt(5e-4, "weight decay of weights (not of biases and norms)", NON_NEGATIVE)
    momentum: float = opt(0.9, "SGD / LARS momentum", PROBABILITY)
    warmup_epochs: float = opt(150.0, "linear warm-up, then cosine to 0 (the authors: half the epochs)", NON_NEGATIVE)
    clip_grad: float = opt(18.0, "gradient norm clip; 0: none", NON_NEGATIVE)


@dataclass
class TrainSection:
    epochs: int = opt(300, "passes over the split", AT_LEAST_1)
    max_steps: Optional[int] = opt(None, "stop early (smoke tests, benchmarks)", AT_LEAST_1)
    seed: int = opt(0, "seed of the model, the sampler and the augmentation")
    bf16: bool = opt(True, "bfloat16 autocast (on GPU only)")
    log_every: int = opt(10, "steps between TensorBoard scalars", AT_LEAST_1)
    ckpt_every: int = opt(1000, "steps between checkpoints", AT_LEAST_1)
    keep_ckpts: int = opt(3, "checkpoints kept; 0: all", NON_NEGATIVE)
    out: str = opt("runs/cstp", "run folder")
    tensorboard: bool = opt(True, "write TensorBoard scalars")
    compile: Optional[bool] = opt(None, "torch.compile the model; null: on where CUDA is used")
    channels_last: Optional[bool] = opt(None, "channels_last_3d memory format; null: on where CUDA is used")
    max_bad_steps: int = opt(0, "non-finite steps skipped before the run stops (0: stop at the first)", NON_NEGATIVE)


@dataclass
class PaperSection:
    table: Optional[int] = opt(None, "the paper's table this config reproduces")
    row: Optional[int] = opt(None, "its row (Exp.) in that table")
    what: str = opt("", "the row in words")
    ucf101: Optional[float] = opt(None, "the paper's UCF-101 top-1 (%)")
    hmdb51: Optional[float] = opt(None, "the paper's HMDB-51 top-1 (%)")


@dataclass
class Config:
    pretrain: bool = opt(True, "false: the row has no pretraining (fine-tune from scratch with eval/finetune.py)")
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    # eval/finetune.py --config reads this section and eval/ft_config.py is its one schema and validator
    finetune: Dict[str, Any] = opt({}, "fine-tuning settings (eval/finetune.py --help-config lists the keys)")
    paper: PaperSection = field(default_factory=PaperSection)


def _schema():
    s = OmegaConf.structured(Config)
    OmegaConf.set_readonly(s.augment, None)     # AugmentConfig is frozen; as a config section it merges
    return s


def _type_at(key: str, schema: type) -> str:
    cls, t = schema, None
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        hints = get_type_hints(cls) if cls else {}
        if part not in hints:
            break
        t = hints[part]
        cls = t if dataclasses.is_dataclass(t) else None
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


def _merge(base, src, where: str, prefix: str = "", fallback_key: str = "?", schema: type = Config):
    """OmegaConf.merge, its errors as one line naming the key (``prefix`` + OmegaConf's) and value."""
    try:
        return OmegaConf.merge(base, src)
    except (OmegaConfBaseException, TypeError) as exc:      # TypeError: a list merged onto a mapping
        key = getattr(exc, "full_key", None) or fallback_key
        if isinstance(exc, ConfigKeyError):
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(base, parent) if parent else base
            raise ConfigError(f"{where}unknown config key '{prefix}{key}'; valid keys here: {sorted(node.keys())}") from None
        try:
            value = OmegaConf.select(src, key)
        except OmegaConfBaseException:
            value = "?"
        raise ConfigError(f"{where}config key {prefix}{key}={value!r}: {one_line(getattr(exc, 'msg', None) or exc)}; "
                          f"expected {_type_at(key, schema)}") from None


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


def load_config(path: str | None = None, overrides: list[str] = ()) -> dict:
    """Defaults, then the YAML file, then each override: a plain resolved dict."""
    cfg = _schema()
    if path:
        cfg = _merge(cfg, _load_yaml(path), f"{path}: ")
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise ConfigError(f"override {o!r} is not of the form section.key=value")
        cfg = _merge(cfg, OmegaConf.from_dotlist([o]), "", fallback_key=o.split("=", 1)[0])
    out = _plain(OmegaConf.to_container(cfg, resolve=True))
    out["model"]["method_params"] = method_params(out["model"]["method"], out["model"]["method_params"])
    validate(out)
    return out


def _plain(v):
    """Tuples (AugmentConfig's) as lists, so the dict is what its YAML or JSON reads back as."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def method_params(method: str, given: dict) -> dict:
    """``given`` deep-merged on the defaults of ``method``'s parameter dataclass, checked."""
    if method not in METHODS:
        raise ConfigError(f"model.method: unknown method {method!r}; valid: {sorted(METHODS)}")
    schema = METHODS[method].Params
    merged = _merge(OmegaConf.structured(schema), OmegaConf.create(given), f"method {method}: ", "model.method_params.",
                    schema=schema)
    params = OmegaConf.to_container(merged)
    for k, v in params.items():
        # every numeric method parameter is a size, a temperature or an EMA rate
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (v <= 0 or ("momentum" in k and v > 1)):
            allowed = "in (0, 1]" if "momentum" in k else "> 0"
            raise ConfigError(f"config key model.method_params.{k}={v!r} is out of range for {method}: must be {allowed}")
    return _plain(params)


def _check_rules(section: type, values: dict, where: str) -> None:
    for f in dataclasses.fields(section):
        v, rule, t = values[f.name], f.metadata.get("rule"), get_type_hints(section)[f.name]
        if dataclasses.is_dataclass(t):
            _check_rules(t, v, f"{where}{f.name}.")
        elif rule is not None and v is not None and not rule.ok(v):
            raise ConfigError(rule.error(f"{where}{f.name}", v))


def validate(cfg: dict) -> None:
    _check_rules(Config, cfg, "")
    for k, v in cfg["augment"].items():
        if k.startswith("p_") and not 0 <= v <= 1:
            raise ConfigError(PROBABILITY.error(f"augment.{k}", v))
    try:
        AugmentConfig(**cfg["augment"])
        d = cfg["data"]
        PairConfig(clip_len=d["clip_len"], rates=tuple(d["rates"]), rotations=tuple(d["rotations"]),
                   temporal_overlaps=overlap_candidates(d["n_overlaps"]),
                   spatial_overlaps=overlap_candidates(d["n_overlaps"]), area_range=tuple(d["area_range"]))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config sections data/augment: {one_line(exc)}") from None
    l = cfg["loss"]
    for key, labels in (("rate", "rates"), ("rotation", "rotations")):
        if l[key] > 0 and len(cfg["data"][labels]) < 2:
            raise ConfigError(f"config key loss.{key}={l[key]} needs at least two data.{labels} to predict, "
                              f"got {cfg['data'][labels]}; set loss.{key}=0 or give more")
    if cfg["pretrain"] and not any(v > 0 for v in l.values()):
        raise ConfigError("every loss weight is 0: enable one of loss." + "/".join(l)
                          + ", or set pretrain: false for a row trained from scratch (Table 1 rows 1-4)")


def dump_yaml(cfg: dict) -> str:
    """``cfg`` as YAML that load_config reads back to the same dict."""
    return OmegaConf.to_yaml(OmegaConf.create(cfg))


def require_pretraining(cfg: dict, source: str | None = None) -> None:
    """What pretraining needs beyond a valid config (evaluation reads any config without them): a
    config that describes pretraining (not a row of the paper trained from scratch) and a shard set."""
    if cfg["pretrain"]:
        if not cfg["data"]["shards"]:
            raise ConfigError("config key data.shards=None: a shard set folder or URL is required to pretrain, "
                              "e.g. data.shards=out/shards/ucf101")
        return
    p, name = cfg["paper"], source or "this config"
    what = f"Table {p['table']} row {p['row']}" if p["table"] else "pretrain: false"
    raise ConfigError(f"{name} is {what} (trained from scratch, no pretraining): run eval/finetune.py "
                      f"--config {name} --ckpt none")
