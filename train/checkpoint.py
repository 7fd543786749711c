"""Checkpoints: built from the run's parts, checked before they are written (every key present, every
weight finite), written atomically, loaded without unpickling arbitrary objects.

Contract (README, "Stage 3: train" > Checkpoints): {"format_version", "config", "step", "epoch",
"backbone", "model", "optimizer", "scheduler", "rng", "loader"}. Evaluation needs only "config" and "backbone".
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Callable

import torch

from shards.errors import InputError, RunFailed, one_line
from shards.atomic_files import atomic_path

from .backbones import build_backbone

FORMAT_VERSION = 1
KEYS = ("format_version", "config", "step", "epoch", "backbone", "model", "optimizer", "scheduler", "rng", "loader")
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
_TMP = re.compile(r"^\..+\.tmp-[0-9a-f]{8}$")      # what a save killed before its rename leaves


class CheckpointError(InputError, ValueError):
    pass


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def export_backbone(model) -> dict:
    """The backbone's weights as evaluation loads them (torchvision's layout where it has one)."""
    bb = model.backbone
    return bb.torchvision_state_dict() if hasattr(bb, "torchvision_state_dict") else bb.state_dict()


def build_payload(*, step: int, model, optimizer, scheduler, loader, config: dict, world_size: int = 1) -> dict:
    # the loader's position counts batches of the epoch plan for this world size; a resume at
    # another one needs it (train/resume.py)
    return {
        "format_version": FORMAT_VERSION, "config": config, "step": step, "epoch": loader.epoch,
        "backbone": export_backbone(model), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": {"torch": torch.get_rng_state()},
        "loader": {**loader.state_dict(), "world_size": world_size},
    }


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity (one device sync)."""
    names = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    if not names:
        return []
    flags = torch.stack([torch.isfinite(state[k]).all() for k in names]).tolist()   # one device, one sync
    return [k for k, ok in zip(names, flags) if not ok]


def validate_payload(payload: dict) -> None:
    """Refuse a payload that lacks a key (a bug: ValueError) or whose weights are not finite (RunFailed)."""
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    for part in ("model", "backbone"):
        bad = nonfinite_tensors(payload[part])
        if bad:
            raise RunFailed(f"step {payload['step']}: {len(bad)} {part} tensors are not finite ({', '.join(bad[:3])}"
                            f"{', ...' if len(bad) > 3 else ''}); no checkpoint written, the earlier ones are kept")


def _atomic_save(obj, path: Path) -> Path:
    """Write ``obj`` to ``path`` through a temporary sibling; a write that fails (a full disk, a
    quota, a lost mount) leaves neither the temporary nor a partial ``path`` and is a RunFailed
    naming the file: the checkpoints written before it stay as they are."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:
        # torch.save's zip writer, closing after a failed write, raises a RuntimeError of its own
        # ("unexpected pos") with the OSError as its context: name the OSError
        cause = _os_error(exc)
        if cause is None:
            raise
        why = cause.strerror or one_line(cause) or type(cause).__name__
        raise RunFailed(f"cannot write {path}: {why}{f' (errno {cause.errno})' if cause.errno else ''}; "
                        f"the checkpoints written before it are kept") from None
    return path


def _os_error(exc: BaseException | None) -> OSError | None:
    """The first OSError in ``exc``'s chain (itself, its cause or context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    validate_payload(payload)
    return _atomic_save(payload, Path(path))


def save_backbone(path: str | Path, state: dict, step: int) -> Path:
    bad = nonfinite_tensors(state)
    if bad:
        raise RunFailed(f"step {step}: backbone tensors are not finite ({', '.join(bad[:3])}); {path} not written")
    return _atomic_save(state, Path(path))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint; any file that is not one gets a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or foreign "
                              f"({type(exc).__name__}: {one_line(exc)[:200]})") from None
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


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of saves that were killed before their rename; returns them."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if _TMP.match(p.name)] if folder.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def _warn(msg: str) -> None:
    warnings.warn(msg, stacklevel=3)


def load_for_resume(path: str | Path) -> dict:
    """A checkpoint that holds everything a resume needs (CheckpointError naming what it lacks)."""
    ck = load_checkpoint(path)
    missing = [k for k in KEYS if k not in ck]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}, which a resume needs")
    return ck


def find_resume(folder: str | Path, on_skip: Callable[[str], None] = _warn) -> tuple[Path, dict] | None:
    """The newest checkpoint in ``folder`` that loads and holds everything a resume needs; each one
    skipped on the way is reported through ``on_skip``."""
    for p in reversed(list_checkpoints(folder)):
        try:
            return p, load_for_resume(p)
        except CheckpointError as exc:
            on_skip(f"skipping unusable checkpoint: {exc}")
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
                              f"(width {m.get('width', 1.0)}): {one_line(exc)}") from None
    return bb, f"{ckpt} (step {ck.get('step')}, {m['backbone']} width {m.get('width', 1.0)})"
