"""Write shard tars, sidecars and any other output atomically (temporary name, then rename).

The tar is deterministic (fixed mtime, owner and mode), so a shard rebuilt after a crash has the
same bytes, the same offsets and therefore the same index as one built in a single run. Every
output of a build goes through :func:`atomic_path`: a reader sees the old thing or the new one,
never half of either, and a failed write leaves no temporary behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .format import FORMAT_VERSION, TEMP_MARK, frame_member, meta_member


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


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o444
    ti.uname = ti.gname = ""
    return ti


class _HashingFile(io.RawIOBase):
    """Write-through file that hashes what passes, so a tar's checksum costs no second read."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.f.tell()

    def write(self, b) -> int:
        self.sha.update(b)
        return self.f.write(b)


class ShardWriter:
    """Collects samples into ``path`` (a .tar), visible under that name only after ``commit``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = temp_sibling(self.path)
        self._file = open(self.tmp, "wb")
        self._hashing = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w", format=tarfile.PAX_FORMAT)
        self._done = False
        self.sha256 = ""

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
        """Finish the tar, fsync, rename into place; returns its size in bytes (``sha256`` is set)."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.sha256 = self._hashing.sha.hexdigest()
        publish(self.tmp, self.path)
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


def _record_checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_sidecar(path: Path, record: dict) -> None:
    record = {"format_version": FORMAT_VERSION, **record}
    record["checksum"] = _record_checksum(record)
    atomic_write_bytes(path, json.dumps(record, sort_keys=True).encode())


def read_sidecar(path: Path) -> dict | None:
    """The sidecar's record, or None when it is missing, unreadable, of another format version or
    does not match its own checksum (a sidecar edited or damaged after it was written)."""
    try:
        with open(path, "rb") as f:
            rec = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format_version") != FORMAT_VERSION:
        return None
    return rec if rec.get("checksum") == _record_checksum(rec) else None


def tar_listing(path: Path) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of every member, read from headers only."""
    with tarfile.open(path, mode="r:") as tf:
        return [(m.name, m.offset_data, m.size) for m in tf.getmembers()]
