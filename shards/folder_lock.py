"""One writer per folder: a lock file naming its holder's host and pid (shard builds, pretraining runs).

A second writer into the same folder is refused at once (exit 2, naming the holder): two builds
would delete each other's temporaries and race on the index; two training runs would mix their
checkpoints and logs. A lock left by a process that is gone (same host, no such pid) is taken over
with a warning. A lock from another host cannot be checked and is never taken: the message says to
delete it by hand if that process is gone. Readers (verify, evaluation) never take it.

It lives in ``shards`` because every stage may import ``shards`` and no stage imports another's
package (preprocess -> shards -> train -> eval).
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from .errors import InputError


class FolderLocked(InputError):
    """Another process holds the folder."""


def read_holder(path: Path) -> tuple[str, int] | None:
    """(host, pid) written in the lock file at ``path``; None if it is missing or unreadable."""
    try:
        host, pid = path.read_text().split()[:2]
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: alive
        return True
    return True


def _create(path: Path) -> bool:
    """Create the lock naming this process; False if it exists (O_EXCL: one creator wins)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def describe(holder: tuple[str, int] | None) -> str:
    return f"pid {holder[1]} on host {holder[0]}" if holder else "an unreadable lock file"


def acquire(folder: Path, name: str, prog: str, what: str) -> Path:
    """Take ``folder/name`` for this process or raise FolderLocked naming the holder. ``prog`` prefixes
    the takeover warning; ``what`` names the kind of writer in messages ("build", "training run")."""
    path = Path(folder) / name
    if _create(path):
        return path
    holder, here = read_holder(path), socket.gethostname()
    if holder is not None and holder[0] == here and not _alive(holder[1]):
        print(f"{prog}: warning: taking over the stale lock {path} of pid {holder[1]} on {here}, "
              "which is no longer running", file=sys.stderr, flush=True)
        path.unlink(missing_ok=True)
        if _create(path):
            return path
        raise FolderLocked(f"another {what} took {path} at the same moment ({describe(read_holder(path))})")
    raise FolderLocked(f"another {what} is writing to {folder}: {path} is held by {describe(holder)}; "
                       "wait for it, or delete the lock if that process is gone")


def release(path: Path) -> None:
    """Remove the lock if this process holds it (a forked child, or a taker-over, leaves it alone)."""
    if read_holder(path) == (socket.gethostname(), os.getpid()):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder: Path, name: str, prog: str, what: str) -> Iterator[Path]:
    path = acquire(folder, name, prog, what)
    try:
        yield path
    finally:
        release(path)
