"""Reading a source: front to back (:func:`open_stream`, resumed where a connection breaks) or by
byte ranges (:class:`RangeReader`), local files on ``open`` and ``os.pread``, remote ones through
fsspec with ``shards.sources``' retries and one-line errors."""
from __future__ import annotations

import io
import os
from typing import BinaryIO

from .sources import STREAM_BLOCK, SourceError, filesystem, is_url, local_path, protocol, retrying


def _open_http_at(fs, path: str, at: int):
    """A plain GET (no range support needed) or, to resume, ``Range: bytes=at-``."""
    f = fs.open(path, "rb", block_size=0, **({"headers": {"Range": f"bytes={at}-"}} if at else {}))
    response = getattr(f, "r", None)   # fsspec's HTTPStreamFile keeps the aiohttp response there
    if at and getattr(response, "status", 206) != 206:
        left = at                       # the server sent the whole file: drop what was delivered
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise EOFError(f"the file is now shorter than the {at} bytes already read")
            left -= len(chunk)
    return f


def _open_buffered_at(fs, path: str, at: int):
    f = fs.open(path, "rb", block_size=STREAM_BLOCK)
    f.seek(at)
    return f


# protocol -> how to open a stream at a byte offset; backends not listed buffer and seek.
STREAM_OPENERS = {"http": _open_http_at, "https": _open_http_at}


class RemoteStream(io.RawIOBase):
    """A remote file read front to back, resumed at the byte reached when its connection breaks."""

    def __init__(self, location: str, timeout: float = 60.0, retries: int = 3, backoff: float | None = None):
        super().__init__()
        self._f = None
        self.location, self.timeout, self.retries, self.backoff = location, timeout, retries, backoff
        self.fs, self.path = filesystem(location, timeout)
        self._opener = STREAM_OPENERS.get(protocol(location), _open_buffered_at)
        self.pos = 0
        self.reopened = 0          # resumes after a broken connection, for tests and logs
        self._retry(self._ensure_open)

    def _retry(self, fn):
        return retrying(fn, self.location, self.timeout, self.retries, self.backoff)

    def _ensure_open(self):
        if self._f is None:
            self._f = self._opener(self.fs, self.path, self.pos)
            self.reopened += self.pos > 0

    def _drop(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail again; it is gone either way
                pass

    def _read_some(self, n: int) -> bytes:
        try:
            self._ensure_open()
            data = self._f.read(n)
        except Exception:
            self._drop()          # the retry reopens at self.pos
            raise
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes (all that is left if n < 0), fewer only at the end of the file."""
        out = []
        got = 0
        while n < 0 or got < n:
            chunk = self._retry(lambda: self._read_some(STREAM_BLOCK if n < 0 else n - got))
            if not chunk:
                break
            out.append(chunk)
            got += len(chunk)
        return b"".join(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()


def open_stream(location: str, timeout: float = 60.0, retries: int = 3, backoff: float | None = None) -> BinaryIO:
    """A file object read front to back; ``read(n)`` returns n bytes unless the file ends."""
    if not is_url(location):
        try:
            return open(local_path(location), "rb")
        except FileNotFoundError:
            raise SourceError(f"shard not found: {location}") from None
        except OSError as exc:
            raise SourceError(f"cannot read {location}: {exc.strerror or exc}") from None
    return RemoteStream(location, timeout, retries, backoff)


# -- byte ranges -------------------------------------------------------------------------------
class RangeReader:
    """Byte ranges of one file: os.pread locally, fsspec ``cat_file`` / ``cat_ranges`` for URLs."""

    def __init__(self, location: str, timeout: float = 60.0, retries: int = 3, backoff: float | None = None):
        self.location, self.timeout, self.retries, self.backoff = location, timeout, retries, backoff
        self._fd = None
        self._fs = None
        if is_url(location):
            self._fs, self._path = filesystem(location, timeout)
        else:
            try:
                self._fd = os.open(local_path(location), os.O_RDONLY)
            except FileNotFoundError:
                raise SourceError(f"shard not found: {location}") from None
            except OSError as exc:
                raise SourceError(f"cannot read {location}: {exc.strerror or exc}") from None

    def _retry(self, fn):
        return retrying(fn, self.location, self.timeout, self.retries, self.backoff)

    def _check(self, data: bytes, start: int, end: int) -> bytes:
        if len(data) != end - start:
            raise SourceError(f"{self.location}: asked for bytes {start}..{end}, got {len(data)} bytes "
                              "(file shorter than the index says, or a server that ignores Range requests)")
        return data

    def read(self, start: int, end: int) -> bytes:
        if self._fd is not None:
            data = os.pread(self._fd, end - start, start)
        else:
            data = self._retry(lambda: self._fs.cat_file(self._path, start=start, end=end))
        return self._check(data, start, end)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each (start, end); remote ranges go out together (concurrently where the
        backend is asynchronous: http, s3, gs)."""
        if self._fd is not None or len(ranges) <= 1:
            return [self.read(a, b) for a, b in ranges]
        starts, ends = [a for a, _ in ranges], [b for _, b in ranges]
        blobs = self._retry(lambda: self._fs.cat_ranges([self._path] * len(ranges), starts, ends, on_error="raise"))
        return [self._check(d, a, b) for d, (a, b) in zip(blobs, ranges)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
