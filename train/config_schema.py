"""The pretraining config's schema: its sections as dataclasses (OmegaConf structured configs), each
field with its default, its meaning (the README's key reference) and its allowed values.

``loss`` has one weight a term: ``contrastive`` and one a registered pretext task (train.pretext),
so :func:`config_class` builds that section, and the ``Config`` holding it, from the registry.
``augment`` is train.augment.AugmentConfig itself (the authors give both views the same
augmentation, so there is one set of keys); :data:`AUGMENT_RULES` gives each key its range.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from train.augment import AugmentConfig
from shards.sampling import PairConfig, overlap_candidates

from shards.decoders import DECODERS

from .backbones import BACKBONES, INITS
from .heads import PAIR_INPUTS
from .methods import METHODS
from .optim import OPTIMIZERS
from .pretext import TASKS


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


def span(lo: float, hi: float) -> Rule:
    return Rule(f"in [{lo:g}, {hi:g}]", lambda v: lo <= v <= hi)


def ordered_pair(what: str, lo_open: float = 0, hi: float = float("inf")) -> Rule:
    top = "" if hi == float("inf") else f" <= {hi:g}"
    return Rule(f"two {what} [lo, hi] with {lo_open:g} < lo <= hi{top}",
                lambda v: len(v) == 2 and lo_open < v[0] <= v[1] <= hi)


AT_LEAST_1 = Rule(">= 1", lambda v: v >= 1)
POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
PROBABILITY = Rule("a probability in [0, 1]", lambda v: 0 <= v <= 1)
POSITIVE_INTS = Rule("a non-empty list of positive integers", lambda v: len(v) > 0 and all(x >= 1 for x in v))
RIGHT_ANGLES = Rule("a non-empty list of multiples of 90", lambda v: len(v) > 0 and all(x % 90 == 0 for x in v))
CANDIDATES = Rule("in 2..16", lambda v: 2 <= v <= 16)


def registry(kind: str, names: dict) -> Rule:
    return Registry(str(sorted(names)), lambda v: v in names, kind)


def opt(default, help: str, rule: Rule | None = None):
    """A config field with its meaning (the README's key reference) and its allowed values."""
    meta = {"help": help, "rule": rule}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_PAIR = PairConfig()    # the sampler's defaults, not a second copy of them

# augment.<key> -> its range (AugmentConfig's fields; tests/train/test_config.py checks that every
# non-boolean one has a rule here)
AUGMENT_RULES = {
    **{k: PROBABILITY for k in ("p_base", "p_jitter", "p_gray", "p_blur", "p_rotate", "p_flip")},
    # a factor drawn in 1 +- x must stay >= 0; torchvision's hue shift is at most half a turn
    **{k: span(0, 1) for k in ("brightness", "contrast", "saturation")},
    "hue": span(0, 0.5),
    "blur_sigma": ordered_pair("sigmas"),
    "max_degrees": span(0, 180),
    "mean": Rule("three channel means in [0, 1]", lambda v: len(v) == 3 and all(0 <= x <= 1 for x in v)),
    "std": Rule("three channel standard deviations > 0", lambda v: len(v) == 3 and all(x > 0 for x in v)),
}


@dataclass
class DataSection:
    shards: Optional[str] = opt(None, "shard set folder or URL (required to pretrain)")
    split: str = opt("1", 'train on this split\'s train videos; "all": every ok video')
    batch_size: int = opt(10, "clip pairs per rank (the authors: 60 in all, over 6 GPUs)", AT_LEAST_1)
    num_workers: int = opt(4, "loader processes per rank", NON_NEGATIVE)
    decode: str = opt("cpu", "where JPEGs are decoded: cpu (loader workers, simplejpeg) or gpu (the training "
                      "process, nvJPEG; workers only read bytes)", registry("decoder", DECODERS))
    clip_len: int = opt(_PAIR.clip_len, "frames per clip", Rule(">= 2", lambda v: v >= 2))
    out_size: int = opt(112, "clip height and width after the crop", AT_LEAST_1)
    rates: List[int] = opt(list(_PAIR.rates), "playback rates (frame strides); [1]: no playback-rate augmentation",
                           POSITIVE_INTS)
    rotations: List[int] = opt(list(_PAIR.rotations), "rotation angles; [0]: no rotation augmentation", RIGHT_ANGLES)
    n_spatial_overlaps: int = opt(len(_PAIR.spatial_overlaps), "N spatial overlap candidates 1/N..1 (Table 4)",
                                  CANDIDATES)
    n_temporal_overlaps: int = opt(len(_PAIR.temporal_overlaps), "N temporal overlap candidates 1/N..1 (Table 4)",
                                   CANDIDATES)
    area_range: List[float] = opt(list(_PAIR.area_range), "crop area / frame area of clip 1",
                                  ordered_pair("fractions", hi=1))
    aspect_range: List[float] = opt(list(_PAIR.aspect_range), "crop width / height, drawn log-uniformly",
                                    ordered_pair("ratios"))
    shuffle_buffer: int = opt(32, "samples in the streaming shuffle buffer", NON_NEGATIVE)
    skip_errors: bool = opt(False, "skip undecodable samples instead of stopping")
    max_skip_fraction: float = opt(0.01, "with skip_errors: stop once more than this fraction of an epoch is skipped",
                                   PROBABILITY)
    io_timeout: float = opt(60.0, "seconds per remote read", POSITIVE)
    io_retries: int = opt(3, "retries of transient remote errors", NON_NEGATIVE)

    @functools.cached_property
    def pair(self) -> PairConfig:
        """The sampler's config, built from this section (once: it is cached)."""
        return PairConfig(clip_len=self.clip_len, rates=tuple(self.rates), rotations=tuple(self.rotations),
                          temporal_overlaps=overlap_candidates(self.n_temporal_overlaps),
                          spatial_overlaps=overlap_candidates(self.n_spatial_overlaps),
                          area_range=tuple(self.area_range), aspect_range=tuple(self.aspect_range))


# keys of earlier versions -> the keys that replace them, read in run folders and checkpoints they wrote
LEGACY_KEYS = {"data.n_overlaps": ("data.n_spatial_overlaps", "data.n_temporal_overlaps")}


@dataclass
class ModelSection:
    backbone: str = opt("r21d_10", "backbone name (r2plus1d_18: torchvision's R(2+1)D-18, not one of the paper's)",
                        registry("backbone", BACKBONES))
    init: str = opt("authors", "weight initialisation: authors (their glorot-uniform weights, batch-norm scales "
                               "included) or pytorch (each layer's default)", registry("init", INITS))
    width: float = opt(1.0, "channel multiplier (0.125: the tiny CPU variants)", Rule("in (0, 4]", lambda v: 0 < v <= 4))
    method: str = opt("byol", "contrastive method", registry("method", METHODS))
    method_params: Dict[str, Any] = opt({}, "parameters of model.method (below); unset ones take its defaults")
    sync_bn: bool = opt(True, "batch norm statistics over every rank")
    pair_input: str = opt("cat", "what the overlap heads see of a pair: cat (the paper: both features "
                                 "concatenated) or compare (also their |difference| and product)",
                          registry("pair input", PAIR_INPUTS))


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
    seed: int = opt(0, "seed of the model, the sampler and the augmentation", NON_NEGATIVE)
    bf16: bool = opt(True, "bfloat16 autocast (on GPU only)")
    log_every: int = opt(10, "steps between TensorBoard scalars", AT_LEAST_1)
    ckpt_every: int = opt(1000, "steps between checkpoints", AT_LEAST_1)
    keep_ckpts: int = opt(3, "checkpoints kept; 0: all", NON_NEGATIVE)
    out: str = opt("runs/cstp", "run folder")
    tensorboard: bool = opt(True, "write TensorBoard scalars")
    compile: Optional[bool] = opt(None, "torch.compile the model; null: on where CUDA is used")
    channels_last: Optional[bool] = opt(None, "channels_last_3d memory format; null: on where CUDA is used")
    collective_timeout: float = opt(600.0, "seconds a rank waits in a collective for the others before it ends "
                                    "(a lost or stalled node); covers rank 0 saving a checkpoint", POSITIVE)
    max_bad_steps: int = opt(0, "non-finite steps skipped before the run stops (0: stop at the first)", NON_NEGATIVE)


@dataclass
class PaperSection:
    table: Optional[int] = opt(None, "the paper's table this config reproduces")
    row: Optional[int] = opt(None, "its row (Exp.) in that table")
    what: str = opt("", "the row in words")
    ucf101: Optional[float] = opt(None, "the paper's UCF-101 top-1 (%)")
    hmdb51: Optional[float] = opt(None, "the paper's HMDB-51 top-1 (%)")


def _section(default):
    return field(default_factory=default)


@functools.lru_cache(maxsize=None)
def _build(tasks: tuple) -> type:
    loss = dataclasses.make_dataclass("LossSection", [
        ("contrastive", float, opt(0.1, "weight of the contrastive loss (BYOL: summed over both directions)",
                                   NON_NEGATIVE)),
        *((t.name, float, opt(t.weight, t.help, NON_NEGATIVE)) for t in tasks)])
    cfg = dataclasses.make_dataclass("Config", [
        ("pretrain", bool, opt(True, "false: the row has no pretraining (fine-tune from scratch with eval/finetune.py)")),
        ("data", DataSection, _section(DataSection)), ("model", ModelSection, _section(ModelSection)),
        ("loss", loss, _section(loss)), ("augment", AugmentConfig, _section(AugmentConfig)),
        ("optim", OptimSection, _section(OptimSection)), ("train", TrainSection, _section(TrainSection)),
        # eval/finetune.py --config reads this section; eval/ft_config.py is its one schema and validator
        ("finetune", Dict[str, Any], opt({}, "fine-tuning settings (eval/finetune.py --help-config lists the keys)")),
        ("paper", PaperSection, _section(PaperSection))])
    loss.__module__ = cfg.__module__ = __name__
    return cfg


def config_class() -> type:
    """The Config dataclass for the pretext tasks registered now (eq. 5: one loss weight a term)."""
    cls = _build(tuple(TASKS.values()))
    mod = sys.modules[__name__]
    # the current classes under their names, so instances pickle (loader workers, spawn)
    mod.Config, mod.LossSection = cls, cls.__dataclass_fields__["loss"].type
    return cls


config_class()      # Config and LossSection exist under their names from import on (unpickling looks them up)
