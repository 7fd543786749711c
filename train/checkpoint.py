"""Checkpoints: written atomically, loaded without unpickling arbitrary objects.

Contract (DESIGN.md): {"format_version", "config", "step", "epoch", "backbone", "model", "optimizer",
"scheduler", "scaler", "rng", "loader"}. Evaluation needs only "config" and "backbone".
"""
from __future__ import annotations

import os
import re
import uuid
import warnings
from pathlib import Path

import torch

from shards.errors import InputError, one_line

from .backbones import build_backbone

FORMAT_VERSION = 1
KEYS = ("format_version", "config", "step", "epoch", "backbone", "model", "optimizer", "scheduler", "scaler", "rng", "loader")
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


class CheckpointError(InputError, ValueError):
    pass


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint; any file that is not one gets a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {one_line(exc)[:200]})") from None
    if not isinstance(ck, dict) or "format_version" not in ck:
        raise CheckpointError(f"{path}: not a CSTP checkpoint (no format_version)")
    if ck["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ck['format_version']}, this code reads {FORMAT_VERSION}")
    need = ("config", "backbone")
    if any(k not in ck for k in need):
        raise CheckpointError(f"{path}: checkpoint lacks {[k for k in need if k not in ck]}")
    return ck


def list_checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name)[1]))


def find_resume(folder: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint in ``folder`` that loads and holds everything a resume needs."""
    for p in reversed(list_checkpoints(folder)):
        try:
            ck = load_checkpoint(p)
        except CheckpointError as exc:
            warnings.warn(f"skipping unusable checkpoint: {exc}")
            continue
        if all(k in ck for k in KEYS):
            return p, ck
        warnings.warn(f"skipping {p}: it lacks what a resume needs")
    return None


def prune(folder: str | Path, keep: int) -> None:
    for p in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        p.unlink(missing_ok=True)


def load_backbone(ckpt: str, backbone: str = "r21d_10", width: float = 1.0, seed: int = 0):
    """(backbone, description). ``ckpt='none'``: a randomly initialised ``backbone`` (the baseline)."""
    if ckpt == "none":
        torch.manual_seed(seed)
        return build_backbone(backbone, width), f"random init ({backbone}, width {width}, seed {seed})"
    ck = load_checkpoint(ckpt)
    m = ck["config"].get("model", {}) if isinstance(ck["config"], dict) else {}
    try:
        bb = build_backbone(m["backbone"], m.get("width", 1.0))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{ckpt}: its config names no known backbone ({exc})") from None
    state = ck["backbone"]
    target = bb.net if hasattr(bb, "net") and not any(k.startswith("net.") for k in state) else bb
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt}: its backbone weights do not fit {m['backbone']} "
                              f"(width {m.get('width', 1.0)}): {str(exc).splitlines()[0]}") from None
    return bb, f"{ckpt} (step {ck.get('step')}, {m['backbone']} width {m.get('width', 1.0)})"
