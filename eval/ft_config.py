"""The fine-tuning configuration (eval/finetune.py, and eval/linear_probe.py's default protocol): one
schema, one validator. The defaults are the authors' main_ft_mp.py / test.py as their README runs them
(UCF-101 pretraining; configs/finetune_k400.yaml: after Kinetics-400). Sources, later ones winning:

    the defaults below
    -> the preset named by ``preset`` (``base``: the paper's "Base" augmentation of Table 1's rows
       trained from scratch, Gaussian blur included)
    -> the ``finetune:`` section of ``--config FILE`` (configs/finetune*.yaml, or an ablation row)
    -> ``section.key=value`` overrides and the command's shorthand flags (--lr, --epochs, ...)

Every key is typed and range-checked at load: a bad one fails with one line naming it, its value and
what is allowed (exit 2).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from shards.errors import InputError, one_line
from shards.input_files import read_input_file


@dataclass(frozen=True)
class Rule:
    allowed: str
    ok: Callable[[Any], bool]


AT_LEAST_1 = Rule(">= 1", lambda v: v >= 1)
POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
PROBABILITY = Rule("a probability in [0, 1]", lambda v: 0 <= v <= 1)
BELOW_1 = Rule("in [0, 1)", lambda v: 0 <= v < 1)
CUT = Rule("in (0, 1)", lambda v: 0 < v < 1)
HUE = Rule("in [0, 0.5]", lambda v: 0 <= v <= 0.5)
RATES = Rule("a non-empty list of whole numbers >= 1, e.g. [1, 2, 4, 8]", lambda v: len(v) > 0 and all(x >= 1 for x in v))
ANGLES = Rule("a non-empty list of multiples of 90, e.g. [0, 90, 180, 270]", lambda v: len(v) > 0 and all(x % 90 == 0 for x in v))
AREA = Rule("[lo, hi] with 0 < lo <= hi <= 1", lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1)
ASPECT = Rule("[lo, hi] with 0 < lo <= hi", lambda v: len(v) == 2 and 0 < v[0] <= v[1])
SIGMA = Rule("[lo, hi] with 0 < lo <= hi", lambda v: len(v) == 2 and 0 < v[0] <= v[1])
TEST_CLIPS = Rule("'authors' (every (clip_len-1) x stride frames, plus one clip ending at the last frame), "
                  "'all' (non-overlapping tiling) or a number of evenly spaced clips >= 1",
                  lambda v: v in ("authors", "all") or (v.isdigit() and int(v) >= 1))


def opt(default, help: str, rule: Rule | None = None):
    """A key with its meaning (--help-config, README) and its allowed values."""
    meta = {"help": help, "rule": rule}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def one_of(*names: str) -> Rule:
    return Rule(" or ".join(repr(n) for n in names), lambda v: v in names)


PRESET = one_of("authors", "base")


@dataclass
class OptimSection:
    lr: float = opt(0.025, "SGD learning rate (the authors: 0.025 after UCF-101 pretraining, 0.02 after "
                           "Kinetics-400, configs/finetune_k400.yaml)", POSITIVE)
    momentum: float = opt(0.9, "SGD momentum", BELOW_1)
    weight_decay: float = opt(5e-4, "SGD weight decay", NON_NEGATIVE)
    epochs: int = opt(100, "training epochs per split", AT_LEAST_1)
    max_steps: Optional[int] = opt(None, "stop each split's training after this many steps (smoke runs)", AT_LEAST_1)
    batch_size: int = opt(60, "clips per step over ALL ranks (the authors' --batch_size 60 on 2 GPUs, which their "
                              "loader divides by the world size: 30 per process); must divide by the rank count",
                          AT_LEAST_1)
    patience: int = opt(10, "ReduceLROnPlateau on the validation loss: epochs without improvement before a cut",
                        NON_NEGATIVE)
    factor: float = opt(0.1, "ReduceLROnPlateau: the lr is multiplied by this at a cut (PyTorch's default, "
                             "as the authors)", CUT)


@dataclass
class ClipSection:        # null: as the checkpoint was trained (the --ckpt none values in brackets)
    clip_len: Optional[int] = opt(None, "frames per clip (the authors' sample_duration; null: the checkpoint's "
                                        "data.clip_len [16])", AT_LEAST_1)
    stride: int = opt(4, "frames between a clip's consecutive frames, training and test (the authors' pb_rate)",
                      AT_LEAST_1)
    crop: Optional[int] = opt(None, "side of the square clips the network sees, training and test (sample_size; "
                                    "null: the checkpoint's data.out_size [112])", AT_LEAST_1)
    short_side: Optional[int] = opt(None, "test/validation: frames seen as if resized to this short side, then "
                                          "centre-cropped to crop (the authors' img_test: 128 for 112; null: crop x "
                                          "128/112 [128])", AT_LEAST_1)
    mean: Optional[List[float]] = opt(None, "per-channel mean the clips are standardised with (null: as the "
                                            "checkpoint was pretrained [Kinetics statistics])", Rule("3 values", lambda v: len(v) == 3))
    std: Optional[List[float]] = opt(None, "per-channel std (null: as the checkpoint was pretrained)",
                                     Rule("3 values > 0", lambda v: len(v) == 3 and all(x > 0 for x in v)))


@dataclass
class AugmentSection:
    area: List[float] = opt([0.2, 1.0], "training crop: its area as a fraction of the frame's, drawn in [lo, hi] "
                                        "(ClipRandomSizedCrop bottom_area=0.2)", AREA)
    aspect: List[float] = opt([0.75, 4 / 3], "training crop: its aspect ratio drawn in [lo, hi], then w and h "
                                             "swapped with p 0.5, resized to a crop x crop square", ASPECT)
    attempts: int = opt(10, "training crop: draws before falling back to the centre square", AT_LEAST_1)
    p_jitter: float = opt(0.3, "probability of colour jitter per clip (ClipColorJitter p=0.3)", PROBABILITY)
    brightness: float = opt(0.4, "jitter: brightness factor drawn in 1 +- this", BELOW_1)
    contrast: float = opt(0.4, "jitter: contrast factor drawn in 1 +- this", BELOW_1)
    saturation: float = opt(0.4, "jitter: saturation factor drawn in 1 +- this", BELOW_1)
    hue: float = opt(0.1, "jitter: hue shift drawn in +- this (turns)", HUE)
    p_gray: float = opt(0.0, "probability of grayscale per clip (the authors' fine-tuning: none)", PROBABILITY)
    p_blur: float = opt(0.0, "probability of Gaussian blur per clip (none; preset base: 0.5)", PROBABILITY)
    blur_sigma: List[float] = opt([0.1, 2.0], "blur sigma drawn in [lo, hi] pixels (the authors' GaussianBlur)", SIGMA)
    p_flip: float = opt(0.0, "probability of a horizontal flip per clip (the authors' fine-tuning: none)",
                        PROBABILITY)


@dataclass
class EvalSection:
    test_clips: str = opt("authors", "clips per test video, logits averaged: " + TEST_CLIPS.allowed, TEST_CLIPS)
    val_fraction: float = opt(0.1, "share of each class's train videos held out for model selection and the "
                                   "lr schedule (the authors use the test split: we never do)", CUT)
    val_clips: int = opt(1, "clips per validation video (the authors: 1)", AT_LEAST_1)
    val_random: bool = opt(True, "validation clips start at random, redrawn each epoch (the authors' val clip); "
                                 "false: evenly spaced, the same every epoch")


@dataclass
class HeadSection:
    l2: bool = opt(True, "L2-normalise the pooled feature before the classifier (the authors' cls_bn path)")
    bn: bool = opt(True, "BatchNorm1d on the (normalised) feature before the classifier")
    dropout: float = opt(0.0, "dropout before the classifier (the authors: none)", BELOW_1)
    init: str = opt("authors", "'authors': Glorot-uniform weights of the Linear and BatchNorm1d layers, as their "
                               "R21DBYOL; 'pytorch': PyTorch's defaults", one_of("authors", "pytorch"))


@dataclass
class FrozenSection:
    bn: str = opt("train", "linear evaluation: the frozen backbone's batch norm in 'train' mode (batch statistics, "
                           "running ones updated, as the authors' ft_fc leaves it) or 'eval' (running statistics, "
                           "the backbone untouched)", one_of("train", "eval"))


@dataclass
class FinetuneConfig:
    preset: str = opt("authors", "'authors': the fine-tuning augmentation of main_ft_mp.py (crop, jitter); 'base': "
                                 "the paper's Base augmentation for Table 1's rows from scratch (blur added)",
                      PRESET)
    rates: List[int] = opt([1], "playback-rate augmentation (Table 1 rows 2, 4): a training clip's frames are "
                                "stride x one of these apart, drawn among those whose clip fits the video", RATES)
    rotations: List[int] = opt([0], "rotation augmentation (Table 1 rows 3, 4): each training clip turned by one "
                                    "of these degrees", ANGLES)
    seed: int = opt(0, "seed of every random draw (and of --ckpt none's weights)", NON_NEGATIVE)
    optim: OptimSection = field(default_factory=OptimSection)
    clips: ClipSection = field(default_factory=ClipSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    eval: EvalSection = field(default_factory=EvalSection)
    head: HeadSection = field(default_factory=HeadSection)
    frozen: FrozenSection = field(default_factory=FrozenSection)


# what each preset changes on the defaults
PRESETS = {"authors": {}, "base": {"augment": {"p_blur": 0.5}}}


def _merge(base, src, where: str):
    try:
        return OmegaConf.merge(base, src)
    except (OmegaConfBaseException, TypeError) as exc:
        key = getattr(exc, "full_key", None) or "?"
        if isinstance(exc, ConfigKeyError):
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(base, parent) if parent else base
            raise InputError(f"{where}unknown key finetune.{key}; valid keys here: {', '.join(node.keys())}") from None
        raise InputError(f"{where}finetune.{key}: {one_line(getattr(exc, 'msg', None) or exc)}") from None


def read_section(path: str) -> dict:
    """The ``finetune:`` section of a YAML file (the rest of an ablation row is the pretraining config)."""
    doc = read_input_file(path, "--config", yaml.safe_load, "YAML", errors=(yaml.YAMLError,))
    section = doc.get("finetune") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise InputError(f"--config {path} has no finetune: section; give one, e.g. finetune: {{optim: {{lr: 0.02}}}}")
    return section


def _dotlist(overrides: list[str]):
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise InputError(f"override {o!r} is not of the form section.key=value (e.g. optim.lr=0.02)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise InputError(f"overrides {' '.join(overrides)}: {one_line(exc)}") from None


def load(path: str | None = None, overrides: list[str] = (), values: dict | None = None) -> FinetuneConfig:
    """Defaults -> preset -> ``path``'s finetune: section -> ``overrides`` (``key=value``) -> ``values``
    ({dotted key: value}, the shorthand flags), checked."""
    sources = [(OmegaConf.create(read_section(path)), f"--config {path}: ")] if path else []
    if overrides:
        sources.append((_dotlist(overrides), ""))
    if values:
        sources.append((OmegaConf.create(_nested(values)), ""))
    cfg = OmegaConf.structured(FinetuneConfig)
    for src, where in sources:                 # first pass: which preset
        cfg = _merge(cfg, src, where)
    preset = cfg.preset
    if preset not in PRESETS:
        raise InputError(f"finetune.preset={preset!r} is not allowed: must be {PRESET.allowed}")
    cfg = _merge(OmegaConf.structured(FinetuneConfig), OmegaConf.create(PRESETS[preset]), f"preset {preset}: ")
    for src, where in sources:
        cfg = _merge(cfg, src, where)
    out = OmegaConf.to_object(cfg)
    validate(out)
    return out


def _nested(values: dict) -> dict:
    """{"optim.lr": 0.1} -> {"optim": {"lr": 0.1}}"""
    out: dict = {}
    for key, v in values.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return out


def _check(obj, where: str) -> None:
    for f in dataclasses.fields(obj):
        v, rule = getattr(obj, f.name), f.metadata.get("rule")
        if dataclasses.is_dataclass(v):
            _check(v, f"{where}{f.name}.")
        elif rule is not None and v is not None and not rule.ok(v):
            raise InputError(f"finetune.{where}{f.name}={v!r} is not allowed: must be {rule.allowed}")


def validate(cfg: FinetuneConfig) -> None:
    """Every key's range; then what keys must agree on."""
    _check(cfg, "")
    if cfg.clips.crop is not None and cfg.clips.short_side is not None and cfg.clips.crop > cfg.clips.short_side:
        raise InputError(f"finetune.clips.crop={cfg.clips.crop} is larger than finetune.clips.short_side="
                         f"{cfg.clips.short_side}: the test crop is cut from frames at that short side")


def clip_rule(cfg: FinetuneConfig) -> int | str:
    """eval.test_clips as the clip rule's argument: 'authors', 'all' or a number."""
    v = cfg.eval.test_clips
    return int(v) if v.isdigit() else v


def as_dict(cfg: FinetuneConfig) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: FinetuneConfig) -> str:
    """The resolved settings as the ``finetune:`` section of a file --config reads back."""
    return yaml.safe_dump({"finetune": as_dict(cfg)}, sort_keys=False)


def help_lines(schema=FinetuneConfig, where: str = "") -> list[str]:
    """``key (default): meaning`` for every key (--help-config)."""
    out = []
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(f.type) or f.name in _SECTIONS:
            out += help_lines(_SECTIONS[f.name], f"{where}{f.name}.")
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out.append(f"{where}{f.name} ({default!r}): {f.metadata['help']}")
    return out


_SECTIONS = {"optim": OptimSection, "clips": ClipSection, "augment": AugmentSection, "eval": EvalSection,
             "head": HeadSection, "frozen": FrozenSection}
