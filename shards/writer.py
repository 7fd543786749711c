"""Write shard tars and their sidecars, atomically (``shards.atomic_files``: temporary name, then rename).

The tar is deterministic (fixed mtime, owner and mode), so a shard rebuilt after a crash has the
same bytes, the same offsets and therefore the same index as one built in a single run.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path

from .atomic_files import publish, temp_sibling
from .format import FORMAT_VERSION, TEMP_MARK, frame_member, meta_member
from .sources import SourceError, is_url, local_path
from .store import read_bytes, upload, write_bytes


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(_BLOCK)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o444
    ti.uname = ti.gname = ""
    return ti


# A ustar header of ours, field by field: name (100) | mode, uid, gid (24) | size (12) | mtime (12) |
# checksum (8) | type '0' and an empty link name (101) | magic and version (8) | the rest (247).
_MODE_OWNER = b"0000444\x000000000\x000000000\x00"
_MTIME = b"00000000000\x00"
_TYPE_TO_MAGIC = b"0" + bytes(100) + b"ustar\x0000"
_TAIL = bytes(_BLOCK - 265)
_FIXED_SUM = sum(_MODE_OWNER) + sum(_MTIME) + sum(b"        ") + sum(_TYPE_TO_MAGIC)


def member_header(name: str, size: int) -> bytes:
    """The header block(s) tarfile writes (PAX format) for a regular file of ours: mode 0444,
    owner 0, mtime 0. Built by hand for the usual short ASCII name, since tarfile spends ~100 us per
    member, a tenth of the transcode's own time on short clips; tarfile itself for anything else."""
    raw = name.encode("ascii", "replace")
    if len(raw) >= 100 or not name.isascii() or size >= 8 ** 11:
        return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    size_field = b"%011o\x00" % size
    # The checksum is the sum of the header's bytes with its own field as spaces: the fixed fields'
    # share is a constant, so only the name and the size are summed per member.
    checksum = b"%06o\x00 " % (_FIXED_SUM + sum(raw) + sum(size_field))
    return b"".join((raw.ljust(100, b"\0"), _MODE_OWNER, size_field, _MTIME, checksum, _TYPE_TO_MAGIC, _TAIL))


class ShardWriter:
    """Collects samples into ``path`` (a .tar), visible under that name only after ``commit``.

    The bytes are those tarfile would write (tests hold it to that), so any tar reader reads them.
    ``path`` may be a URL (s3://...): the tar is then spooled to a local temporary file (in
    $TMPDIR) and uploaded whole at ``commit``, so a failed upload can be tried again without
    transcoding the shard again, and the object appears only once complete.
    """

    def __init__(self, path: str | os.PathLike):
        self.location = str(path)
        if is_url(self.location):
            name = self.location.rstrip("/").rsplit("/", 1)[-1]
            fd, tmp = tempfile.mkstemp(prefix=f".{name}{TEMP_MARK}")
            os.close(fd)
            self.path, self.tmp = None, Path(tmp)
        else:
            self.path = Path(local_path(self.location))
            self.tmp = temp_sibling(self.path)
        self._file = open(self.tmp, "wb")
        self._sha = hashlib.sha256()
        self._offset = 0
        self._done = False
        self.sha256 = ""

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self._offset += len(data)

    def add_sample(self, key: str, meta: dict, frames: list[bytes]) -> dict:
        """Append one video; returns where its frames landed (byte offsets and sizes).

        The video's members are laid out in memory and written (and hashed) in one call: three
        writes and three hash updates per frame cost more than the tar's layout itself."""
        chunks: list[bytes] = []
        at = self._offset
        offsets, sizes = [], []
        for name, data in [(meta_member(key), json.dumps(meta, sort_keys=True).encode()),
                           *((frame_member(key, i), jpg) for i, jpg in enumerate(frames))]:
            header = member_header(name, len(data))
            at += len(header)
            offsets.append(at)
            sizes.append(len(data))
            pad = -len(data) % _BLOCK
            chunks += (header, data, _ZEROS[:pad]) if pad else (header, data)
            at += len(data) + pad
        self._write(b"".join(chunks))
        return {"frame_offset": offsets[1:], "frame_size": sizes[1:]}

    def commit(self) -> int:
        """Finish the tar, fsync, rename into place; returns its size in bytes (``sha256`` is set)."""
        self._write(bytes(2 * _BLOCK))                 # end-of-archive marker
        if self._offset % _RECORD:
            self._write(bytes(_RECORD - self._offset % _RECORD))
        self._file.flush()
        if self.path is not None:
            # A spool file is read back by the upload, never after a crash: no fsync for it.
            os.fsync(self._file.fileno())
        self._file.close()
        self.sha256 = self._sha.hexdigest()
        if self.path is not None:
            publish(self.tmp, self.path)
        else:

            try:
                upload(self.tmp, self.location)
            finally:
                self.tmp.unlink(missing_ok=True)
        self._done = True
        return self._offset

    def abort(self) -> None:
        """Drop the temporary tar. On a full disk closing it fails too (the buffered tail cannot be
        written); the file is removed all the same and the error that stopped the shard is the one
        reported."""
        if not self._done:
            self._done = True
            try:
                self._file.close()
            except OSError:
                pass
            finally:
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


def write_sidecar(path: str | os.PathLike, record: dict) -> None:
    """Write the record beside its tar (a path or a URL), whole or not at all."""
    record = {"format_version": FORMAT_VERSION, **record}
    record["checksum"] = _record_checksum(record)
    write_bytes(str(path), json.dumps(record, sort_keys=True).encode())


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The sidecar's record (a path or a URL), or None when it is missing, unreadable, of another
    format version or does not match its own checksum (a sidecar edited or damaged after it was
    written). A store that cannot be reached raises (a SourceError), so it is never 'missing'."""

    try:
        data = read_bytes(str(path))
        rec = json.loads(data) if data is not None else None
    except SourceError:
        raise
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format_version") != FORMAT_VERSION:
        return None
    return rec if rec.get("checksum") == _record_checksum(rec) else None


def tar_listing(path: Path) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of every member, read from headers only."""
    with tarfile.open(path, mode="r:") as tf:
        return [(m.name, m.offset_data, m.size) for m in tf.getmembers()]
