"""Where shard bytes come from: local paths and http(s):// URLs, streamed or by byte range."""
from __future__ import annotations

import os
from typing import BinaryIO

from .errors import InputError


def is_url(location: str) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def join(base: str, name: str) -> str:
    base = str(base)
    return base.rstrip("/") + "/" + name if is_url(base) else os.path.join(base, name)


class SourceError(InputError, OSError):
    """A shard or index that cannot be read; the message names it."""


def open_stream(location: str, timeout: float = 60.0, retries: int = 3) -> BinaryIO:
    """A file object read front to back (a plain GET for URLs: no range support needed)."""
    if not is_url(location):
        try:
            return open(location, "rb")
        except FileNotFoundError:
            raise SourceError(f"shard not found: {location}") from None
    import fsspec

    try:
        return fsspec.open(location, "rb", block_size=0).open()
    except FileNotFoundError:
        raise SourceError(f"shard not found (HTTP 404): {location}") from None
    except Exception as exc:  # noqa: BLE001 - aiohttp's errors vary by cause; name the URL
        raise SourceError(f"cannot open {location}: {type(exc).__name__}: {exc}") from None


class RangeReader:
    """Byte ranges of one file: os.pread locally, HTTP Range requests for URLs."""

    def __init__(self, location: str, timeout: float = 60.0, retries: int = 3):
        self.location = location
        self._fd = None
        self._fs = None
        if is_url(location):
            import fsspec

            self._fs = fsspec.filesystem("http")
        else:
            try:
                self._fd = os.open(location, os.O_RDONLY)
            except FileNotFoundError:
                raise SourceError(f"shard not found: {location}") from None

    def read(self, start: int, end: int) -> bytes:
        if self._fd is not None:
            data = os.pread(self._fd, end - start, start)
        else:
            try:
                data = self._fs.cat_file(self.location, start=start, end=end)
            except FileNotFoundError:
                raise SourceError(f"shard not found (HTTP 404): {self.location}") from None
        if len(data) != end - start:
            raise SourceError(f"{self.location}: asked for bytes {start}..{end}, got {len(data)} bytes "
                              "(file shorter than the index says, or a server that ignores Range requests)")
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
