"""What evaluation takes from a checkpoint: which file (a run folder's newest valid checkpoint, a
``ckpt-*.pt``, or the ``backbone.pt`` export beside its run's ``config.yaml``), the backbone and width
it was trained with, and the clips it saw (clip length, crop, normalisation). Flags that disagree
with the checkpoint: the backbone and width are refused (its weights fit no other), clip settings
override it with one warning line."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from train.augment import MEAN, STD
from shards.errors import InputError
from shards.input_files import read_input_file
from train.backbones import build_backbone
from train.checkpoint import CheckpointError, list_checkpoints, load_backbone, load_checkpoint

# --ckpt none builds this unless told otherwise, and sees clips as the authors' test does
NONE = {"backbone": "r21d_10", "width": 1.0, "clip_len": 16, "crop": 112, "short_side": 128}
EXPORT = "backbone.pt"
# the authors test 112 crops of frames at a 128 short side; a checkpoint trained on other crops is
# tested at the same ratio
SHORT_PER_CROP = 128 / 112


def resolve_path(ckpt: str) -> str:
    """A file to load: ``ckpt`` itself, or a run folder's newest checkpoint that loads (said on stderr)."""
    p = Path(ckpt)
    if ckpt == "none" or not p.is_dir():
        return ckpt
    skipped = []
    for c in reversed(list_checkpoints(p)):
        try:
            load_checkpoint(c)
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        note = f" ({len(skipped)} newer one(s) skipped: {skipped[0]})" if skipped else ""
        print(f"--ckpt {ckpt}: using {c}, its newest valid checkpoint{note}", file=sys.stderr)
        return str(c)
    if (p / EXPORT).is_file():
        print(f"--ckpt {ckpt}: no valid ckpt-*.pt; using {p / EXPORT}", file=sys.stderr)
        return str(p / EXPORT)
    raise InputError(f"--ckpt {ckpt}: a folder with no loadable checkpoint (ckpt-*.pt) and no {EXPORT}"
                     + (f"; {skipped[0]}" if skipped else ""))


def _export_config(path: Path) -> dict:
    run_cfg = path.parent / "config.yaml"
    if not run_cfg.is_file():
        raise InputError(f"--ckpt {path}: a {EXPORT} needs its run's config.yaml beside it (to know its backbone); "
                         f"{run_cfg} is missing")
    cfg = read_input_file(run_cfg, "config", yaml.safe_load, "YAML", errors=(yaml.YAMLError,))
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise InputError(f"{run_cfg}: not a run config (no model: section)")
    return cfg


def _load_export(path: Path, cfg: dict):
    m = cfg["model"]
    try:
        bb = build_backbone(m["backbone"], m.get("width", 1.0))
        state = torch.load(path, map_location="cpu", weights_only=True)
        target = bb.net if hasattr(bb, "net") and not any(k.startswith("net.") for k in state) else bb
        target.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not the {m.get('backbone')} backbone its config.yaml names "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return bb, f"{path} ({m['backbone']} width {m.get('width', 1.0)})"


def _refuse_other_model(path: str, cfg: dict, backbone: str | None, width: float | None) -> None:
    m = cfg.get("model", {}) if isinstance(cfg, dict) else {}
    for flag, given, key, default in (("--backbone", backbone, "backbone", None), ("--width", width, "width", 1.0)):
        held = m.get(key, default)
        if given is not None and held is not None and given != held:
            raise InputError(f"{flag} {given}: {path} holds a {m.get('backbone')} of width {m.get('width', 1.0)} "
                             f"(model.{key}={held}); drop {flag} or give a checkpoint of that model")


def load_model(ckpt: str, backbone: str | None, width: float | None, seed: int = 0):
    """(backbone module, description, the config it was trained with or None for --ckpt none)."""
    if ckpt == "none":
        b, w = backbone or NONE["backbone"], NONE["width"] if width is None else width
        bb, desc = load_backbone("none", b, w, seed=seed)
        return bb, desc, None
    path = Path(resolve_path(ckpt))
    if path.name == EXPORT:
        cfg = _export_config(path)
        _refuse_other_model(str(path), cfg, backbone, width)
        bb, desc = _load_export(path, cfg)
        return bb, desc, cfg
    cfg = load_checkpoint(path)["config"]
    _refuse_other_model(str(path), cfg, backbone, width)
    bb, desc = load_backbone(str(path))
    return bb, desc, cfg


def trained_clips(cfg: dict | None) -> dict:
    """clip_len, crop, short_side, mean and std as the model was trained (the --ckpt none defaults
    where the config does not say)."""
    d = (cfg or {}).get("data", {}) or {}
    a = (cfg or {}).get("augment", {}) or {}
    crop = d.get("out_size", NONE["crop"])
    return {"clip_len": d.get("clip_len", NONE["clip_len"]), "crop": crop,
            "short_side": round(crop * SHORT_PER_CROP), "mean": list(a.get("mean", MEAN)), "std": list(a.get("std", STD))}


def settle(prog: str, given: dict, cfg: dict | None) -> dict:
    """The clip settings to use: each given one (not None) wins, with one warning line where the
    checkpoint says otherwise; the rest from the checkpoint."""
    out = trained_clips(cfg)
    for key, value in given.items():
        if value is None:
            continue
        if cfg is not None and key in ("clip_len", "crop") and out[key] != value:
            print(f"{prog}: warning: --{key.replace('_', '-')} {value} overrides the checkpoint's {out[key]} "
                  "(it was trained so)", file=sys.stderr)
        out[key] = value
    if given.get("short_side") is None:       # derived from the crop actually used
        out["short_side"] = round(out["crop"] * SHORT_PER_CROP)
    return out
