"""Where shard bytes come from: local paths, and any URL that fsspec knows (http(s)://, s3://, gs://,
memory://, ...): names, filesystems, retries and one-line errors (reading them: ``shards.source_reads``).

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

import os
import time
from typing import Callable, TypeVar

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
