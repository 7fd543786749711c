"""Kinetics-400: CSVs ``label,youtube_id,time_start,time_end,split[,is_cc]`` (test: no label column).

The video id is ``<youtube_id>_<start:06d>_<end:06d>``, the name the official downloader gives;
files named that way or just ``<youtube_id>.<ext>``, flat or in per-class folders, both match.
Class order: label_map_k400.txt where present, else the labels sorted. One split column, "1", holds
the CSV's own split: train 1, val 2 (the set that evaluation tests on), test 0 (no labels).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from shards.format import SPLIT_TEST, SPLIT_TRAIN, SPLIT_UNUSED

from .base import (AnnotationError, Listing, VideoEntry, assign_role, attach_paths, find_file, read_lines,
                   read_text, register, scan_videos)

SPLITS = ("1",)
# The CSV's own split words; "val" is what evaluation tests on, "test" has no labels.
SPLIT_CODE = {"train": SPLIT_TRAIN, "val": SPLIT_TEST, "validate": SPLIT_TEST, "test": SPLIT_UNUSED}
ROLES = {SPLIT_TRAIN: "train", SPLIT_TEST: "val", SPLIT_UNUSED: "test"}


def video_id(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}"


def parse_csv(path: Path) -> list[dict]:
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        need = {"youtube_id", "time_start", "time_end", "split"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise AnnotationError(f"{path}: header {reader.fieldnames} lacks {sorted(need - set(reader.fieldnames or []))}")
        rows = []
        for n, row in enumerate(reader, 2):
            try:
                rows.append({"label": row.get("label"), "youtube_id": row["youtube_id"],
                             "start": int(float(row["time_start"])), "end": int(float(row["time_end"])),
                             "split": row["split"].strip()})
            except (TypeError, ValueError) as exc:
                raise AnnotationError(f"{path}:{n}: {exc}: {row}") from None
            if rows[-1]["split"] not in SPLIT_CODE:
                raise AnnotationError(f"{path}:{n}: unknown split {rows[-1]['split']!r}")
        return rows


@register("kinetics400")
def load(videos: Path, annotations: Path) -> Listing:
    csvs = find_file(annotations, "*.csv")
    if not csvs:
        raise AnnotationError(f"no Kinetics CSV files under {annotations}")
    rows = [r for p in csvs for r in parse_csv(p)]
    label_maps = find_file(annotations, "label_map*.txt")
    if label_maps:
        classes = read_lines(label_maps[0])
    else:
        classes = sorted({r["label"] for r in rows if r["label"]})
    index = {c: i for i, c in enumerate(classes)}
    entries: dict[str, VideoEntry] = {}
    both: list[tuple[str, str]] = []
    for r in rows:
        vid = video_id(r["youtube_id"], r["start"], r["end"])
        if r["label"] and r["label"] not in index:
            raise AnnotationError(f"label {r['label']!r} of {vid} is not in the class list")
        label = index[r["label"]] if r["label"] else -1
        if vid in entries:
            assign_role(entries[vid], 0, SPLIT_CODE[r["split"]], SPLITS[0], both)
        else:
            entries[vid] = VideoEntry(vid, label, [SPLIT_CODE[r["split"]]])
    ordered = list(entries.values())
    unlisted = attach_paths(ordered, scan_videos(videos), lambda e: [e.video_id, e.video_id[:-14]])
    return Listing("kinetics400", classes, list(SPLITS), ordered, unlisted, roles=ROLES, both_roles=both)
