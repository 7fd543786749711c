"""What every dataset adapter returns, the registry, and matching listed videos to files on disk."""
from __future__ import annotations

import dataclasses
import os
import unicodedata
from pathlib import Path
from typing import Callable

from shards.errors import InputError
from shards.format import SPLIT_ROLE_NAMES, SPLIT_TEST, SPLIT_TRAIN

# Files with these extensions count as videos (and as "unlisted" when no list names them). A listed
# video is also matched by stem when its file has another extension: ffmpeg reads by content, so it
# is transcoded (or fails with ffmpeg's reason) rather than reported missing while it is on disk.
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp",
                              ".ogv", ".wmv", ".gif", ".ts", ".mts", ".m2ts", ".vob", ".asf", ".divx", ".f4v"})


@dataclasses.dataclass
class VideoEntry:
    video_id: str                 # as the annotations name it (no extension)
    label: int                    # 0-based index into Listing.classes; -1 where unknown
    split: list[int]              # per split of Listing.splits: 0 unused, 1 train, 2 test
    path: str | None = None       # the file on disk, None where missing


@dataclasses.dataclass
class Listing:
    dataset: str
    classes: list[str]
    splits: list[str]
    entries: list[VideoEntry]
    unlisted: list[str]           # video files on disk that no annotation names
    # What each split code means in this dataset's words (Kinetics: 2 is its "val" set).
    roles: dict[int, str] = dataclasses.field(default_factory=lambda: dict(SPLIT_ROLE_NAMES))
    # (video_id, split name) of each video listed with two roles in one split (see assign_role).
    both_roles: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def missing(self) -> list[VideoEntry]:
        return [e for e in self.entries if e.path is None]

    @property
    def present(self) -> list[VideoEntry]:
        return [e for e in self.entries if e.path is not None]

    def report(self, examples: int = 3) -> str:
        lines = [f"{self.dataset}: {len(self.entries)} videos listed, {len(self.present)} found on disk, "
                 f"{len(self.missing)} missing, {len(self.unlisted)} on disk but unlisted"]
        if self.missing:
            lines.append("  missing, e.g. " + ", ".join(e.video_id for e in self.missing[:examples]))
        if self.unlisted:
            lines.append("  unlisted, e.g. " + ", ".join(self.unlisted[:examples]))
        if self.both_roles:
            lines.append(self.both_roles_warning(examples))
        return "\n".join(lines)

    def both_roles_warning(self, examples: int = 3) -> str:
        shown = ", ".join(f"{v} (split {s})" for v, s in self.both_roles[:examples])
        train, test = self.roles[SPLIT_TRAIN], self.roles[SPLIT_TEST]
        return (f"  warning: {len(self.both_roles)} videos are listed as both {train} and {test} in one split; "
                f"each is kept as {test} only: {shown}"
                + (", ..." if len(self.both_roles) > examples else ""))


Loader = Callable[[Path, Path], Listing]
DATASETS: dict[str, Loader] = {}


def register(name: str):
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn
    return deco


class AnnotationError(InputError, ValueError):
    """An annotation file is missing or malformed; the message names the file and line."""


class VideoFolderError(InputError, FileNotFoundError):
    """The video folder is missing, is not a folder, or cannot be listed."""


def load_listing(name: str, videos: str | os.PathLike, annotations: str | os.PathLike) -> Listing:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    videos, annotations = Path(videos), Path(annotations)
    if not videos.is_dir():
        what = "is not a folder" if videos.exists() else "does not exist"
        raise VideoFolderError(f"video folder {videos} {what}; --videos wants the folder holding the dataset's videos")
    if not annotations.exists():
        raise AnnotationError(f"annotation path {annotations} does not exist; --annotations wants the split files' folder")
    return DATASETS[name](videos, annotations)


def assign_role(entry: VideoEntry, col: int, code: int, split_name: str, both: list[tuple[str, str]]) -> None:
    """Give the entry role ``code`` in split ``col``. A video listed with two roles in one split
    (train and test) is recorded in ``both`` and kept as test: a video the model is evaluated on
    must not also be one it trained on. 0 (unused) never replaces a role."""
    old = entry.split[col]
    if old and code and old != code:
        both.append((entry.video_id, split_name))
        code = SPLIT_TEST
    entry.split[col] = code or old


def name_key(stem: str) -> str:
    """A file name as matching compares it: Unicode NFC. macOS writes names decomposed (NFD), and a
    list typed elsewhere holds them composed; the two spell the same name in other bytes."""
    return unicodedata.normalize("NFC", stem)


def find_file(annotations: Path, pattern: str) -> list[Path]:
    """Files under ``annotations`` (a folder, searched recursively, or one file) matching ``pattern``."""
    if annotations.is_file():
        return [annotations] if annotations.match(pattern) else []
    return sorted(annotations.rglob(pattern))


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _unlistable(exc: OSError):
    raise VideoFolderError(f"cannot list video folder {exc.filename}: {exc.strerror or exc}") from None


def scan_videos(root: Path) -> dict[str, list[Path]]:
    """Every entry under ``root`` by stem (its NFC form). Lists, since a stem can exist in two containers.

    Folders named like a video (``x.avi/``), links that lead nowhere, FIFOs: all are kept, so that a
    listed video in that state is reported with the OS's reason, not as missing. A folder that
    cannot be listed stops the scan (a partial listing would pass for a partial download).
    """
    by_stem: dict[str, list[Path]] = {}
    for dirpath, dirs, files in os.walk(root, onerror=_unlistable):
        for f in sorted(files) + sorted(d for d in dirs if is_video_name(Path(d))):
            p = Path(dirpath) / f
            by_stem.setdefault(name_key(p.stem), []).append(p)
    return by_stem


def attach_paths(entries: list[VideoEntry], by_stem: dict[str, list[Path]],
                 stems_of: Callable[[VideoEntry], list[str]], prefer: Callable[[VideoEntry, Path], bool] | None = None) -> list[str]:
    """Give each entry its file (matched by stem, the listed extension preferred); return unlisted files."""
    used: set[Path] = set()
    for e in entries:
        for stem in stems_of(e):
            cands = by_stem.get(name_key(stem))
            if cands:
                ranked = sorted(cands, key=lambda p: (not is_video_name(p), not (prefer and prefer(e, p)), str(p)))
                e.path = str(ranked[0])
                used.add(ranked[0])
                break
    return sorted(str(p) for ps in by_stem.values() for p in ps if p not in used and is_video_name(p))


def read_text(path: Path) -> str:
    """The file as UTF-8 text; an error names the file and the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                              "save the file as UTF-8") from None


def read_lines(path: Path) -> list[str]:
    """Non-empty lines, CRLF and trailing spaces removed (the official lists carry both).

    Blank lines are dropped, so callers number lines with :func:`numbered_lines` instead.
    """
    return [ln for _, ln in numbered_lines(path)]


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number in the file, stripped line) for each non-empty line."""
    return [(n, ln.strip()) for n, ln in enumerate(read_text(path).splitlines(), 1) if ln.strip()]
