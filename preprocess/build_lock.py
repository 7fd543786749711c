"""One build per output folder: a lock file naming its holder's host and pid.

A second build into the same ``--out`` refuses at once (two builds would each delete the other's
temporaries and race on the index). A lock left by a process that is gone (same host, no such pid)
is taken over with a warning; a lock from another host cannot be checked and is never taken.

In an object store (``--out s3://...``) the lock is an object with the same content and rules,
created with a conditional write (``If-None-Match: *``), which S3, SeaweedFS and MinIO honour: of
two builds starting together one gets it. A store that ignores the condition makes the check a
look-then-write, which two builds started within the same second could both pass.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from shards import store
from shards.errors import InputError
from shards.format import LOCK_NAME
from shards.sources import join


class BuildLocked(InputError):
    """Another build holds the output folder."""


def _holder(path: str) -> tuple[str, int] | None:
    try:
        host, pid = (store.read_bytes(path) or b"").decode().split()[:2]
        return host, int(pid)
    except (UnicodeDecodeError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create(path: str) -> bool:
    return store.create_exclusive(path, f"{socket.gethostname()} {os.getpid()}\n".encode())


@contextlib.contextmanager
def build_lock(out: str | Path) -> Iterator[str]:
    """Hold ``out``'s lock (``out`` a folder or a URL) for the block."""
    path = join(str(out), LOCK_NAME)
    if not _create(path):
        holder = _holder(path)
        here = socket.gethostname()
        if holder is not None and holder[0] == here and not _alive(holder[1]):
            print(f"build_shards: warning: taking over the stale lock {path} of pid {holder[1]} on {here}, "
                  "which is no longer running", file=sys.stderr, flush=True)
            store.remove(path)
            if not _create(path):
                holder = _holder(path)
                raise BuildLocked(f"another build took {path} at the same moment ({_describe(holder)})")
        else:
            raise BuildLocked(f"another build is writing to {out}: {path} is held by {_describe(holder)}; "
                              "wait for it, or delete the lock if that process is gone")
    try:
        yield path
    finally:
        if _holder(path) == (socket.gethostname(), os.getpid()):
            store.remove(path)


def _describe(holder: tuple[str, int] | None) -> str:
    return f"pid {holder[1]} on host {holder[0]}" if holder else "an unreadable lock file"
