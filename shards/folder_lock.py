"""One writer per folder: a lock file naming its holder's host and pid (shard builds, pretraining runs).

A second writer into the same folder is refused at once (exit 2, naming the holder): two builds
would delete each other's temporaries and race on the index; two training runs would mix their
checkpoints and logs. A lock left by a process that is gone (same host, no such pid) is taken over
with a warning. A lock from another host cannot be checked and is never taken: the message says to
delete it by hand if that process is gone. Readers (verify, evaluation) never take it.

The folder may be a URL (a build into an object store): the lock is then an object with the same
content and rules, created with a conditional write (``If-None-Match: *``), which S3, SeaweedFS and
MinIO honour, so of two writers starting together one gets it. A store that ignores the condition
makes the check a look-then-write, which two writers started within the same second could both pass.

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

from . import store
from .errors import InputError
from .sources import join, local_path


class FolderLocked(InputError):
    """Another process holds the folder."""


def read_holder(path: str | Path) -> tuple[str, int] | None:
    """(host, pid) written in the lock file at ``path``; None if it is missing or unreadable."""
    try:
        host, pid = (store.read_bytes(str(path)) or b"").decode().split()[:2]
        return host, int(pid)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: alive
        return True
    return True


def _create(path: str) -> bool:
    """Create the lock naming this process; False if it exists (one creator wins)."""
    return store.create_exclusive(path, f"{socket.gethostname()} {os.getpid()}\n".encode())


def describe(holder: tuple[str, int] | None) -> str:
    return f"pid {holder[1]} on host {holder[0]}" if holder else "an unreadable lock file"


def acquire(folder: str | Path, name: str, prog: str, what: str) -> str | Path:
    """Take ``folder/name`` for this process or raise FolderLocked naming the holder. ``prog`` prefixes
    the takeover warning; ``what`` names the kind of writer in messages ("build", "training run")."""
    url = join(str(folder), name)
    path = url if store.is_url(url) else Path(local_path(url))
    if _create(url):
        return path
    holder, here = read_holder(path), socket.gethostname()
    if holder is not None and holder[0] == here and not _alive(holder[1]):
        print(f"{prog}: warning: taking over the stale lock {path} of pid {holder[1]} on {here}, "
              "which is no longer running", file=sys.stderr, flush=True)
        store.remove(url)
        if _create(url):
            return path
        raise FolderLocked(f"another {what} took {path} at the same moment ({describe(read_holder(path))})")
    raise FolderLocked(f"another {what} is writing to {folder}: {path} is held by {describe(holder)}; "
                       "wait for it, or delete the lock if that process is gone")


def release(path: str | Path) -> None:
    """Remove the lock if this process holds it (a forked child, or a taker-over, leaves it alone)."""
    if read_holder(path) == (socket.gethostname(), os.getpid()):
        store.remove(str(path))


@contextlib.contextmanager
def folder_lock(folder: str | Path, name: str, prog: str, what: str) -> Iterator[str | Path]:
    path = acquire(folder, name, prog, what)
    try:
        yield path
    finally:
        release(path)
