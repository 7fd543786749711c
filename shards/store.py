"""Writing (and listing) a shard set's files: in a local folder, or at any fsspec URL that can be
written (s3://, gs://, memory://, ...). Each function takes a location string (a path, or a URL).

Locally a file is written under a temporary name and renamed into place. An object store has no
rename, and needs none: an object becomes visible only once its upload is complete (one PUT, or a
multipart upload's final request), so a file there is written straight to its name. Either way a
reader sees the whole file or none of it. Transient failures (5xx, a dropped connection) are tried
again as reads are (``sources.retrying``); every failure is one line naming the location.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from .atomic_files import atomic_write_bytes
from .source_reads import open_stream
from .sources import STREAM_BLOCK, SourceError, describe, filesystem, is_url, local_path, protocol, retrying

RETRIES = 3
TIMEOUT = 60.0

# Schemes fsspec reads but a build cannot write to (no uploads, or archives).
READ_ONLY = frozenset({"http", "https", "github", "git", "zip", "tar", "libarchive", "reference", "data"})
# The package each scheme needs, for the message when it is missing; the extra installs it.
BACKENDS = {"s3": ("s3fs", "cstp[s3]"), "s3a": ("s3fs", "cstp[s3]"), "gs": ("gcsfs", "cstp[gcs]"),
            "gcs": ("gcsfs", "cstp[gcs]")}


class StoreError(SourceError):
    """A write into the output location failed; the message names it."""


def _remote(location: str):
    return filesystem(location, TIMEOUT)


def _retry(fn, location: str):
    try:
        return retrying(fn, location, TIMEOUT, RETRIES)
    except SourceError as exc:
        raise StoreError(str(exc).replace("cannot read", "cannot write", 1)) from exc.__cause__


def check_writable(location: str) -> None:
    """One line (an InputError) for a location a build cannot write: a read-only or unknown scheme,
    or a scheme whose package is not installed."""
    if not is_url(location):
        return
    scheme = protocol(location)
    if scheme in READ_ONLY:
        raise StoreError(f"--out {location}: {scheme}:// cannot be written; write to a local folder or an object "
                         "store (s3://, gs://, ...) and serve that")
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError:
        package, extra = BACKENDS.get(scheme, ("its fsspec backend", "the package"))
        raise StoreError(f"--out {location}: {scheme}:// needs {package}: pip install '{extra}'") from None
    except ValueError:
        raise StoreError(f"--out {location}: unknown URL scheme {scheme}://") from None


def open_seekable(location: str, timeout: float = 60.0) -> BinaryIO:
    """A file object that seeks (tarfile wants one): ``open`` locally; for a URL fsspec's buffered
    file, which reads ahead in STREAM_BLOCK pieces by byte range."""
    if not is_url(location):
        return open_stream(location)
    fs, path = filesystem(location, timeout)
    try:
        return fs.open(path, "rb", block_size=STREAM_BLOCK)
    except Exception as exc:  # noqa: BLE001 - each backend raises its own kinds
        raise SourceError(describe(exc, location, timeout)[1]) from exc


def makedirs(location: str) -> bool:
    """Create the folder (with its parents; on an object store, the bucket if it is missing);
    True if it did not exist."""
    if not is_url(location):
        path = Path(local_path(location))
        existed = path.is_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the output folder {location}: {exc.strerror or exc}") from None
        return not existed
    fs, path = _remote(location)
    existed = _retry(lambda: fs.exists(path), location)
    if not existed:
        _retry(lambda: fs.makedirs(path, exist_ok=True), location)
    return not existed


def listdir(location: str) -> list[str]:
    """Names of the files and folders directly in ``location`` (none when it does not exist)."""
    if not is_url(location):
        try:
            return sorted(os.listdir(local_path(location)))
        except FileNotFoundError:
            return []
    fs, path = _remote(location)

    def names():
        try:
            entries = fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        finally:
            # a cached listing would answer later size() and exists() calls with this moment's files
            fs.invalidate_cache(path)
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})
    return _retry(names, location)


def exists(location: str) -> bool:
    if not is_url(location):
        return os.path.exists(local_path(location))
    fs, path = _remote(location)
    return bool(_retry(lambda: fs.exists(path), location))


def size(location: str) -> int | None:
    """Bytes of a file; None where there is none."""
    if not is_url(location):
        try:
            return os.stat(local_path(location)).st_size
        except FileNotFoundError:
            return None
    fs, path = _remote(location)

    def get():
        try:
            return int(fs.info(path)["size"])
        except FileNotFoundError:
            return None
    return _retry(get, location)


def read_bytes(location: str) -> bytes | None:
    """A whole (small) file; None where there is none."""
    if not is_url(location):
        try:
            with open(local_path(location), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
    fs, path = _remote(location)

    def get():
        try:
            return fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError):
            return None
    return _retry(get, location)


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file; readers see the old one or the new one."""
    if not is_url(location):
        atomic_write_bytes(local_path(location), data)
        return
    fs, path = _remote(location)
    _retry(lambda: fs.pipe_file(path, data), location)


def create_exclusive(location: str, data: bytes) -> bool:
    """Write ``data`` to ``location`` only if nothing is there; False if something is. Locally
    O_EXCL; remotely a conditional write (``If-None-Match: *`` on S3), which the store decides."""
    if not is_url(location):
        try:
            fd = os.open(local_path(location), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, path = _remote(location)

    def put():
        try:
            try:
                fs.pipe_file(path, data, mode="create")
            except TypeError:       # a backend without exclusive writes: look, then write
                if fs.exists(path):
                    return False
                fs.pipe_file(path, data)
        except FileExistsError:
            return False
        except OSError as exc:       # s3fs: HTTP 412 PreconditionFailed arrives as a plain OSError
            if "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower():
                return False
            raise
        return True
    return _retry(put, location)


def upload(local_file: str | os.PathLike, location: str) -> None:
    """Put a finished local file at ``location`` (a local rename, or an upload)."""
    if not is_url(location):
        os.replace(local_file, local_path(location))
        return
    fs, path = _remote(location)
    _retry(lambda: fs.put_file(os.fspath(local_file), path), location)


def remove(location: str) -> None:
    """Remove a file or a folder with everything in it; nothing there is fine."""
    if not is_url(location):
        p = Path(local_path(location))
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        return
    fs, path = _remote(location)

    def rm():
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path, recursive=True)
    _retry(rm, location)


def remove_empty_folder(location: str) -> None:
    """Remove the folder if nothing is in it (after a refused start that made it)."""
    if listdir(location):
        return
    if not is_url(location):
        with contextlib.suppress(OSError):
            os.rmdir(local_path(location))
        return
    fs, path = _remote(location)
    with contextlib.suppress(Exception):
        fs.rmdir(path)
