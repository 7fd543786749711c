"""The run folder: one run at a time (a lock), what a run may find in it at start (checkpoints of an
earlier run, continued only when asked; temporary files of a save that was killed, removed), and
its config.yaml (the run's config as it started, then a line for each resume)."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch

from shards.errors import InputError, plural
from shards.folder_lock import acquire, release
from shards.atomic_files import atomic_write_bytes

from . import ddp as D
from .checkpoint import list_checkpoints, remove_temporaries
from .config import dump_yaml
from .runlog import LOG

RUN_FILES = (LOG, "backbone.pt", "config.yaml")
RUN_LOCK = ".run.lock"      # evaluation reads a run folder without it


@contextlib.contextmanager
def run_folder_lock(out: Path, is_main: bool, device: torch.device) -> Iterator[None]:
    """Rank 0 holds ``out/.run.lock`` while the block runs; every rank learns whether it got it, so a
    refused start ends on every rank (rank 0 names the holder). A folder this start created is
    removed again if the start leaves it empty (a refused start leaves nothing behind)."""
    lock, created, err = None, False, None
    if is_main:
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock = acquire(out, RUN_LOCK, prog="pretrain", what="training run")
        except OSError as exc:
            err = InputError(f"cannot create the run folder {out}: {exc.strerror or exc}")
        except InputError as exc:
            err = exc
    if not D.all_ranks_true(torch.tensor(err is None, device=device)):
        raise err or InputError(f"rank 0 could not take the run folder {out}")
    try:
        yield
    finally:
        if lock is not None:
            release(lock)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def write_config(out: Path, cfg, resume_line: str | None = None) -> None:
    """A new run writes config.yaml; a resume appends its line to it (YAML readers skip comments), or
    writes the resumed config with that line if the file is gone."""
    path = out / "config.yaml"
    if resume_line is not None and path.is_file():
        with open(path, "a") as f:
            f.write(resume_line)
        return
    atomic_write_bytes(path, (dump_yaml(cfg) + (resume_line or "")).encode())


def prepare_run_folder(out: Path, resume: str, overwrite: bool, is_main: bool, say: Callable[[str], None]) -> None:
    """Refuse to start a new run over an earlier one's checkpoints unless ``overwrite``; rank 0 then
    clears that run and any leftover temporary files."""
    found = list_checkpoints(out)
    if found and resume == "none" and not overwrite:
        raise InputError(f"{out} already holds checkpoints (newest {found[-1].name}); pass --resume auto to continue "
                         "that run, another --out for a new one, or --overwrite to replace it")
    if not is_main:
        return
    if found and resume == "none":
        for p in found:
            p.unlink(missing_ok=True)
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "tb", ignore_errors=True)
        say(f"--overwrite: removed {plural(len(found), 'checkpoint')} and the logs of the earlier run in {out}")
    for p in remove_temporaries(out):
        say(f"removed {p.name}, left by a checkpoint save that was killed")
