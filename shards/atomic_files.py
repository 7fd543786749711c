"""Write a file or a folder atomically: under a temporary name beside it, then one rename.

A reader sees the old thing or the new one, never half of either, and a failed write leaves no
temporary behind. Shards, sidecars, the index, checkpoints, the run log and the run folder's
config all go through :func:`atomic_path`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .format import TEMP_MARK


def temp_sibling(path: Path) -> Path:
    """A hidden, unique name beside ``path``; the build's clean-up recognises it by ``TEMP_MARK``."""
    return path.with_name(f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}")


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish(tmp: Path, final: Path) -> None:
    """Move a finished ``tmp`` (file or folder) to ``final``, replacing what was there."""
    if tmp.is_dir() and final.exists():
        if not final.is_dir() or final.is_symlink():
            raise InputError(f"{final} exists and is not a folder; remove it or write elsewhere")
        # A folder cannot replace a non-empty folder in one rename: move the old one aside first.
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write (a file or a folder); it becomes ``final`` when the block
    ends normally and is removed when it raises."""
    final = Path(final)
    tmp = temp_sibling(final)
    try:
        yield tmp
        publish(tmp, final)
    finally:
        remove_path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
