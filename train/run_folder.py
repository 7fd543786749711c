"""What a run may find in its folder at start: checkpoints of an earlier run (continued only when
asked), and temporary files of a save that was killed (removed)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from shards.errors import InputError, plural

from .checkpoint import list_checkpoints, remove_temporaries
from .runlog import LOG

RUN_FILES = (LOG, "backbone.pt", "config.yaml")


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
