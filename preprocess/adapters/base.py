"""What every dataset adapter returns, the registry, and matching listed videos to files on disk."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv"})


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
        return "\n".join(lines)


Loader = Callable[[Path, Path], Listing]
DATASETS: dict[str, Loader] = {}


def register(name: str):
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn
    return deco


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file and line."""


def load_listing(name: str, videos: str | os.PathLike, annotations: str | os.PathLike) -> Listing:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    videos, annotations = Path(videos), Path(annotations)
    if not videos.is_dir():
        raise FileNotFoundError(f"video folder {videos} does not exist")
    if not annotations.exists():
        raise FileNotFoundError(f"annotation path {annotations} does not exist")
    return DATASETS[name](videos, annotations)


def find_file(annotations: Path, pattern: str) -> list[Path]:
    """Files under ``annotations`` (a folder, searched recursively, or one file) matching ``pattern``."""
    if annotations.is_file():
        return [annotations] if annotations.match(pattern) else []
    return sorted(annotations.rglob(pattern))


def scan_videos(root: Path) -> dict[str, list[Path]]:
    """Video files under ``root`` by stem. Lists, since a stem can exist in two containers."""
    by_stem: dict[str, list[Path]] = {}
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                by_stem.setdefault(p.stem, []).append(p)
    return by_stem


def attach_paths(entries: list[VideoEntry], by_stem: dict[str, list[Path]],
                 stems_of: Callable[[VideoEntry], list[str]], prefer: Callable[[VideoEntry, Path], bool] | None = None) -> list[str]:
    """Give each entry its file (matched by stem, the listed extension preferred); return unlisted files."""
    used: set[Path] = set()
    for e in entries:
        for stem in stems_of(e):
            cands = by_stem.get(stem)
            if cands:
                ranked = sorted(cands, key=lambda p: (not (prefer and prefer(e, p)), str(p)))
                e.path = str(ranked[0])
                used.add(ranked[0])
                break
    return sorted(str(p) for ps in by_stem.values() for p in ps if p not in used)


def read_lines(path: Path) -> list[str]:
    """Non-empty lines, CRLF and trailing spaces removed (the official lists carry both)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [ln.strip() for ln in f.read().splitlines() if ln.strip()]
