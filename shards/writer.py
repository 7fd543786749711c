"""Write one shard tar and its sidecar atomically (temporary name, then rename).

The tar is deterministic (fixed mtime, owner and mode), so a shard rebuilt after a crash has the
same bytes, the same offsets and therefore the same index as one built in a single run.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path

from .format import FORMAT_VERSION, frame_member, meta_member


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o444
    ti.uname = ti.gname = ""
    return ti


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ShardWriter:
    """Collects samples into ``path`` (a .tar), visible under that name only after ``commit``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self._done = False

    def _add(self, name: str, data: bytes) -> tuple[int, int]:
        ti = _tarinfo(name, len(data))
        self._tar.addfile(ti, io.BytesIO(data))
        # tarfile sets offset_data only when reading; the data ends, padded to a block, at tar.offset.
        padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        return self._tar.offset - padded, len(data)

    def add_sample(self, key: str, meta: dict, frames: list[bytes]) -> dict:
        """Append one video; returns where its frames landed (byte offsets and sizes)."""
        self._add(meta_member(key), json.dumps(meta, sort_keys=True).encode())
        offsets, sizes = [], []
        for i, jpg in enumerate(frames):
            off, size = self._add(frame_member(key, i), jpg)
            offsets.append(off)
            sizes.append(size)
        return {"frame_offset": offsets, "frame_size": sizes}

    def commit(self) -> int:
        """Finish the tar, fsync, rename into place; returns its size in bytes."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        self._done = True
        return self.path.stat().st_size

    def abort(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._tar.close()
            finally:
                self._file.close()
                self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def write_sidecar(path: Path, record: dict) -> None:
    record = {"format_version": FORMAT_VERSION, **record}
    atomic_write_bytes(path, json.dumps(record, sort_keys=True).encode())


def read_sidecar(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            rec = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format_version") == FORMAT_VERSION else None


def tar_listing(path: Path) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of every member, read from headers only."""
    with tarfile.open(path, mode="r:") as tf:
        return [(m.name, m.offset_data, m.size) for m in tf.getmembers()]
