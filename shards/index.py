"""The Zarr v3 index of a shard set: written once by the preprocess driver, read by every reader.

One row per video listed by the annotations (V rows), per-frame arrays in CSR form through
``frame_ptr``. Strings are variable-length UTF-8 (numpy StringDType).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from .format import FORMAT_VERSION, INDEX_NAME, REASON_MISSING, STATUS_MISSING, STATUS_OK, unique_keys
from .errors import InputError
from .sources import describe, is_url, local_path, storage_options
from .atomic_files import atomic_path
from .store import remove

_STR = np.dtypes.StringDType()

# name -> dtype of every per-video array (frame_ptr and the per-frame arrays are added on top).
VIDEO_ARRAYS = {
    "video_id": _STR, "label": np.int32, "split": np.int8, "status": np.int8, "error": _STR,
    "shard": np.int32, "n_frames": np.int32, "source_fps": np.float32, "duration": np.float32,
}
REQUIRED_ATTRS = ("format_version", "dataset", "fps", "height", "width", "classes", "splits", "shards")


class IndexError_(InputError, ValueError):
    """The index is missing, unreadable or of another format version."""


class UnknownSplit(InputError, KeyError):
    """A split the index does not have (``data.split=7``); a KeyError for callers that catch one."""

    def __str__(self) -> str:          # KeyError's own str() would quote the message
        return str(self.args[0])


@dataclasses.dataclass
class ShardIndex:
    attrs: dict
    video_id: np.ndarray
    label: np.ndarray
    split: np.ndarray        # [V, S] int8
    status: np.ndarray
    error: np.ndarray
    shard: np.ndarray
    n_frames: np.ndarray
    source_fps: np.ndarray
    duration: np.ndarray
    frame_ptr: np.ndarray    # [V+1]
    frame_offset: np.ndarray
    frame_size: np.ndarray

    def __len__(self) -> int:
        return len(self.video_id)

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def shards(self) -> list[str]:
        return list(self.attrs["shards"])

    def split_column(self, split: str) -> int:
        names = [str(s) for s in self.attrs["splits"]]
        if str(split) not in names:
            raise UnknownSplit(f"split {split!r} is not in this index; it has {names}")
        return names.index(str(split))

    def select(self, split: str | None = None, role: int | None = None, ok_only: bool = True) -> np.ndarray:
        """Row numbers of the videos with that membership (``role`` a SPLIT_* code) and status."""
        mask = np.ones(len(self), bool)
        if ok_only:
            mask &= self.status == STATUS_OK
        if split is not None and role is not None:
            mask &= self.split[:, self.split_column(split)] == role
        return np.flatnonzero(mask)

    def frames_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.frame_ptr[row], self.frame_ptr[row + 1]
        return self.frame_offset[a:b], self.frame_size[a:b]

    def keys(self) -> list[str]:
        """Each row's tar key; derived, as the writer derived it, from the ids in row order."""
        return unique_keys([str(v) for v in self.video_id])

    def row_of(self) -> dict[str, int]:
        return {str(v): i for i, v in enumerate(self.video_id)}


def empty_rows(video_ids: list[str], labels: list[int], split: np.ndarray) -> dict[str, np.ndarray]:
    """Per-video arrays for V listed videos, every one 'missing' until a shard record says otherwise."""
    v = len(video_ids)
    return {
        "video_id": np.array(video_ids, dtype=_STR),
        "label": np.asarray(labels, np.int32).reshape(v),
        "split": np.asarray(split, np.int8).reshape(v, -1),
        "status": np.full(v, STATUS_MISSING, np.int8),
        "error": np.array([REASON_MISSING] * v, dtype=_STR),
        "shard": np.full(v, -1, np.int32),
        "n_frames": np.zeros(v, np.int32),
        "source_fps": np.full(v, np.nan, np.float32),
        "duration": np.full(v, np.nan, np.float32),
    }


def write_index(out_dir: str | Path, attrs: dict, rows: dict[str, np.ndarray],
                frames: dict[int, tuple[list[int], list[int]]]) -> Path:
    """Write ``index.zarr`` under ``out_dir`` atomically (a temporary folder renamed into place).

    ``frames`` maps a row number to its (offsets, sizes); rows without an entry hold no frames.
    """
    missing = [k for k in REQUIRED_ATTRS if k not in attrs and k != "format_version"]
    if missing:
        raise ValueError(f"index attributes missing: {missing}")
    v = len(rows["video_id"])
    counts = np.zeros(v, np.int64)
    for r, (offs, _) in frames.items():
        counts[r] = len(offs)
    frame_ptr = np.zeros(v + 1, np.int64)
    np.cumsum(counts, out=frame_ptr[1:])
    frame_offset = np.zeros(frame_ptr[-1], np.int64)
    frame_size = np.zeros(frame_ptr[-1], np.int32)
    for r, (offs, sizes) in frames.items():
        frame_offset[frame_ptr[r]:frame_ptr[r + 1]] = offs
        frame_size[frame_ptr[r]:frame_ptr[r + 1]] = sizes

    arrays = {**{k: np.asarray(rows[k], VIDEO_ARRAYS[k]) for k in VIDEO_ARRAYS},
              "frame_ptr": frame_ptr, "frame_offset": frame_offset, "frame_size": frame_size}
    attrs = {**attrs, "format_version": FORMAT_VERSION}
    if is_url(str(out_dir)):
        return _write_remote(index_location(str(out_dir)), attrs, arrays)
    final = Path(local_path(str(out_dir))) / INDEX_NAME
    check_index_location(final)
    with atomic_path(final) as tmp:
        _write_group(str(tmp), attrs, arrays)
    return final


def _write_group(store, attrs: dict, arrays: dict[str, np.ndarray]) -> None:
    import zarr

    g = zarr.open_group(store, mode="w", zarr_format=3)
    g.attrs.update(attrs)
    for name, data in arrays.items():
        g.create_array(name, data=data, chunks=(max(1, min(len(data), 1 << 20)),) + data.shape[1:])
    with warnings.catch_warnings():
        # Consolidated metadata is a zarr-python extension to v3; readers over HTTP need it
        # (a plain web server cannot list a folder), so we write it and silence the notice.
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(store, zarr_format=3)


def _write_remote(url: str, attrs: dict, arrays: dict[str, np.ndarray]) -> str:
    """An object store cannot rename a folder into place. The old index is deleted first, and the
    group's consolidated metadata, which readers open the index by (``use_consolidated=True``), is
    the last object written: a reader in between finds no index, never a mix of two."""
    from zarr.storage import FsspecStore


    remove(url)
    store = FsspecStore.from_url(url, storage_options=storage_options(url, 60.0), read_only=False)
    try:
        _write_group(store, attrs, arrays)
    except Exception as exc:  # noqa: BLE001 - each backend raises its own kinds
        raise IndexError_(f"cannot write the shard index {url}: {describe(exc, url)[1]}") from exc
    return url


def check_index_location(path: str | Path) -> None:
    """Refuse early, in one line, an ``index.zarr`` that is not a folder (a file, a link to one)."""
    if is_url(str(path)):
        return
    path = Path(local_path(str(path)))
    if path.exists() and not path.is_dir():
        raise IndexError_(f"{path} is a file, not a Zarr folder; remove it (a build writes the index there)")


def index_location(shard_dir: str) -> str:
    return shard_dir.rstrip("/") + "/" + INDEX_NAME


def _read(shard_dir: str | Path, arrays: tuple[str, ...]) -> tuple[dict, dict]:
    import zarr

    loc = index_location(str(shard_dir))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = zarr.open_group(loc, mode="r", zarr_format=3, use_consolidated=True)
            data = {name: np.asarray(g[name][:]) for name in arrays}
            attrs = dict(g.attrs)
    except FileNotFoundError as exc:
        raise IndexError_(f"no shard index at {loc}: build shards first (preprocess/build_shards.py)") from exc
    except (KeyError, ValueError, OSError) as exc:
        raise IndexError_(f"cannot read the shard index at {loc}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - remote stores raise their own kinds (an HTTP status, ...)
        raise IndexError_(f"shard index: {describe(exc, loc)[1]}") from exc
    if attrs.get("format_version") != FORMAT_VERSION:
        raise IndexError_(f"{loc} has format_version {attrs.get('format_version')!r}; this reader knows {FORMAT_VERSION}")
    return attrs, data


def read_attrs(shard_dir: str | Path) -> dict:
    """The index's attributes alone (dataset, classes, splits, shards, settings...), no arrays read."""
    return _read(shard_dir, ())[0]


def read_index(shard_dir: str | Path) -> ShardIndex:
    """Open the index of a shard set: a local folder or a URL that fsspec reads (http://...)."""
    attrs, data = _read(shard_dir, (*VIDEO_ARRAYS, "frame_ptr", "frame_offset", "frame_size"))
    return ShardIndex(attrs=attrs, **data)
