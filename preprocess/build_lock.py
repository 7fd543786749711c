"""One build per output folder (a path or an object-store URL): shards.folder_lock's lock, as
``<out>/.build.lock``."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from shards.folder_lock import FolderLocked as BuildLocked  # noqa: F401 - the name builds raise
from shards.folder_lock import folder_lock
from shards.format import LOCK_NAME


@contextlib.contextmanager
def build_lock(out: str | Path) -> Iterator[str | Path]:
    with folder_lock(out, LOCK_NAME, prog="build_shards", what="build") as path:
        yield path
