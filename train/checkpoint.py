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

FORMAT_VERSION = 1
KEYS = ("format_version", "config", "step", "epoch", "backbone", "model", "optimizer", "scheduler", "scaler", "rng", "loader")
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


class CheckpointError(ValueError):
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
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
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
