"""Where shard bytes come from: local paths, and any URL that fsspec knows (http(s)://, s3://, gs://,
memory://, ...), streamed front to back or read by byte range.

Local files stay on ``open`` and ``os.pread``: nothing is faster. Remote files go through fsspec
(``url_to_fs``, ``open``, ``cat_file``, ``cat_ranges``) with three guarantees on top:

- a stream's ``read(n)`` returns n bytes unless the file ends (HTTP servers send short chunks);
- a transient failure (HTTP 5xx or 429, a reset or dropped connection, a timeout) is tried again up
  to ``retries`` times with exponential backoff, and a stream that breaks mid-file reopens at the
  byte it reached (an HTTP Range request; a server that ignores it is read again from the start and
  the bytes already delivered are dropped);
- every failure is a :class:`SourceError` of one line naming the location and the cause.
"""
from __future__ import annotations

import io
import os
import time
from typing import BinaryIO, Callable, TypeVar

from .errors import InputError

BACKOFF = 0.5           # seconds before the first retry, doubled for each next one
MAX_BACKOFF = 30.0
STREAM_BLOCK = 8 << 20  # read-ahead of a remote stream where the backend buffers (s3, gs, ...)
RETRY_STATUSES = frozenset({408, 429})  # besides every 5xx

T = TypeVar("T")


def is_url(location: str) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def join(base: str, name: str) -> str:
    base = str(base)
    return base.rstrip("/") + "/" + name if is_url(base) else os.path.join(base, name)


def local_path(location: str) -> str:
    location = str(location)
    return location[len("file://"):] if location.startswith("file://") else location


class SourceError(InputError, OSError):
    """A shard or index that cannot be read; the message names it."""


# -- fsspec filesystems ------------------------------------------------------------------------
def _http_options(timeout: float) -> dict:
    import aiohttp

    # Per socket read, not per request: a shard of any size may stream as long as bytes keep coming.
    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)}}


def _s3_options(timeout: float) -> dict:
    return {"config_kwargs": {"connect_timeout": timeout, "read_timeout": timeout}}   # botocore.Config


# protocol -> storage options that carry the I/O timeout; other backends keep their own defaults.
TIMEOUT_OPTIONS: dict[str, Callable[[float], dict]] = {
    "http": _http_options, "https": _http_options, "s3": _s3_options, "s3a": _s3_options,
}


def protocol(location: str) -> str:
    return str(location).split("://", 1)[0].lower() if is_url(location) else "file"


def storage_options(location: str, timeout: float) -> dict:
    """The fsspec storage options that give ``location``'s backend the I/O timeout."""
    make = TIMEOUT_OPTIONS.get(protocol(location))
    return make(timeout) if make else {}


def filesystem(location: str, timeout: float = 60.0):
    """(fsspec filesystem, path inside it) for a URL; an unknown scheme or missing backend is a SourceError."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(location, **storage_options(location, timeout))
    except (ImportError, ValueError) as exc:   # no such protocol, or its package (s3fs, gcsfs) missing
        raise SourceError(f"cannot read {location}: {type(exc).__name__}: {_first_line(exc)}") from None


# -- failures ----------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unwrap(exc: BaseException) -> BaseException:
    """The failure behind ``exc``: fsspec's HTTP ``info`` turns any failed HEAD/GET (a 500, a refused
    connection) into a FileNotFoundError, keeping the real error as its cause."""
    cause = exc.__cause__ if isinstance(exc, FileNotFoundError) else None
    if cause is not None and (_http_status(cause) or isinstance(cause, (TimeoutError, *_connection_errors()))):
        return cause
    return exc


def _http_status(exc: BaseException) -> tuple[int, str] | None:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and hasattr(exc, "request_info"):   # aiohttp's ClientResponseError
        return status, str(getattr(exc, "message", "") or "")
    return None


def _connection_errors() -> tuple[type, ...]:
    try:
        import aiohttp
    except ImportError:
        return (ConnectionError,)
    return (ConnectionError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


def describe(exc: BaseException, location: str, timeout: float | None = None) -> tuple[bool, str]:
    """(transient, one-line message naming ``location`` and the cause) for a failed remote call."""
    exc = _unwrap(exc)
    status = _http_status(exc)
    if status is not None and status[0] != 404:
        code, reason = status
        return code >= 500 or code in RETRY_STATUSES, f"cannot read {location}: HTTP {code} {reason}".rstrip()
    if isinstance(exc, FileNotFoundError) or status is not None:
        http = protocol(location) in ("http", "https")
        return False, f"shard not found{' (HTTP 404)' if http else ''}: {location}"
    if isinstance(exc, TimeoutError):
        if timeout is None:
            return True, f"cannot read {location}: timed out"
        return True, (f"cannot read {location}: no data within the {timeout:g} s I/O timeout "
                      "(raise it with data.io_timeout)")
    if isinstance(exc, _connection_errors()):
        return True, f"cannot read {location}: connection failed: {type(exc).__name__}: {_first_line(exc)}"
    return False, f"cannot read {location}: {type(exc).__name__}: {_first_line(exc)}"


def retrying(fn: Callable[[], T], location: str, timeout: float, retries: int, backoff: float | None = None) -> T:
    """``fn()``, tried again after transient failures (up to ``retries`` times, with backoff)."""
    backoff = BACKOFF if backoff is None else backoff
    for attempt in range(retries + 1):
        try:
            return fn()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - each backend raises its own kinds; describe() sorts them
            transient, message = describe(exc, location, timeout)
            if not transient or attempt == retries:
                tries = f" (gave up after {attempt + 1} attempts)" if transient and attempt else ""
                raise SourceError(message + tries) from exc
        time.sleep(min(backoff * 2 ** attempt, MAX_BACKOFF))
    raise AssertionError("unreachable")


# -- streams -----------------------------------------------------------------------------------
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
