"""A streaming reader of shard tars that reads only the members it is asked for.

Python's tarfile spends ~100 us per member building TarInfo objects, most of a loader's time when a
video has hundreds of frames and a clip pair needs about twenty. This reader parses the 512-byte
headers itself (ustar, with pax and GNU long names), checks each header's checksum, and skips the
data of unwanted members (a seek on local files, a read on streams). It never writes anything:
member names are only strings to match against the index, whatever '..' or '/' they contain.
"""
from __future__ import annotations

from typing import BinaryIO, Callable, Iterator

from .format import tar_header_ok

BLOCK = 512
_ZERO = bytes(BLOCK)


class TarFormatError(ValueError):
    pass


def octal(field: bytes) -> int:
    if field and field[0] & 0x80:                      # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _read_full(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end: a raw stream or socket may return short reads."""
    data = f.read(n)
    if len(data) in (0, n):
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_exact(f: BinaryIO, n: int, offset: int) -> bytes:
    data = _read_full(f, n)
    if len(data) != n:
        raise TarFormatError(f"truncated tar: wanted {n} bytes at byte {offset}, got {len(data)}")
    return data


def _pax_path(data: bytes) -> str | None:
    pos = 0
    path = None
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        key, _, value = data[sp + 1: pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def iter_members(f: BinaryIO, want: Callable[[str], bool], seekable: bool = False) -> Iterator[tuple[str, bytes | None]]:
    """(name, data) of each regular file member; data is None where ``want(name)`` is false.

    ``seekable``: skip unwanted data with a seek (local files) instead of reading it (streams; an
    HTTP stream may claim to seek and then refuse).
    """
    offset = 0
    long_name = None
    while True:
        hdr = _read_full(f, BLOCK)
        if not hdr:
            raise TarFormatError(f"truncated tar: no end-of-archive marker after byte {offset}")
        if len(hdr) < BLOCK:
            raise TarFormatError(f"truncated tar: partial header at byte {offset}")
        if hdr == _ZERO:
            return
        if not tar_header_ok(hdr):
            raise TarFormatError(f"corrupt tar header at byte {offset} (checksum mismatch)")
        size = octal(hdr[124:136])
        kind = hdr[156:157]
        padded = -(-size // BLOCK) * BLOCK
        data_at = offset + BLOCK
        offset = data_at + padded
        if kind in (b"x", b"L", b"g"):
            body = _read_exact(f, padded, data_at)[:size]
            if kind == b"x":
                long_name = _pax_path(body) or long_name
            elif kind == b"L":
                long_name = body.rstrip(b"\0").decode("utf-8")
            continue
        name = long_name
        long_name = None
        if name is None:
            name = hdr[0:100].rstrip(b"\0").decode("utf-8")
            prefix = hdr[345:500].rstrip(b"\0").decode("utf-8")
            if prefix:
                name = prefix + "/" + name
        regular = kind in (b"0", b"\0", b"7")
        if regular and want(name):
            yield name, _read_exact(f, padded, data_at)[:size]
            continue
        if seekable:
            f.seek(padded, 1)
        else:
            _read_exact(f, padded, data_at)
        if regular:
            yield name, None
