"""HMDB-51: testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt; videos under <root>/<class>/.

Each line is ``<name>.avi <0|1|2>`` (0 unused, 1 train, 2 test), often with a trailing space. Class
order is class_list.txt's where the annotations hold it (TSN's and mmaction2's order, which is
not quite alphabetical: climb before climb_stairs, kick_ball before kick), else alphabetical. Splits "1", "2", "3".
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import (AnnotationError, Listing, VideoEntry, assign_role, attach_paths, find_file,
                   numbered_lines, read_lines, register, scan_videos)

SPLITS = ("1", "2", "3")
_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")


def parse_split_file(path: Path) -> list[tuple[str, int]]:
    out = []
    for n, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise AnnotationError(f"{path}:{n}: expected '<name>.avi <0|1|2>', got {line!r}")
        out.append((Path(parts[0]).stem, int(parts[1])))
    return out


@register("hmdb51")
def load(videos: Path, annotations: Path) -> Listing:
    files = [p for p in find_file(annotations, "*_test_split*.txt") if _FILE.match(p.name)]
    if not files:
        raise AnnotationError(f"no <class>_test_split<N>.txt files under {annotations}")
    names = {_FILE.match(p.name)["cls"] for p in files}
    class_list = find_file(annotations if annotations.is_dir() else annotations.parent, "class_list.txt")
    if class_list:
        classes = read_lines(class_list[0])
        if set(classes) != names:
            raise AnnotationError(f"{class_list[0]} names other classes than the split files: "
                                  f"{sorted(set(classes) ^ names)[:5]}")
    else:
        classes = sorted(names)
    index = {c: i for i, c in enumerate(classes)}
    entries: dict[str, VideoEntry] = {}
    both: list[tuple[str, str]] = []
    for p in sorted(files, key=lambda p: (index[_FILE.match(p.name)["cls"]], p.name)):
        m = _FILE.match(p.name)
        s = SPLITS.index(m["split"])
        for vid, code in parse_split_file(p):
            e = entries.setdefault(vid, VideoEntry(vid, index[m["cls"]], [0] * len(SPLITS)))
            if e.label != index[m["cls"]]:
                raise AnnotationError(f"{p}: {vid} is also listed under class {classes[e.label]!r}")
            assign_role(e, s, code, m["split"], both)
    ordered = list(entries.values())
    unlisted = attach_paths(ordered, scan_videos(videos), lambda e: [e.video_id],
                            prefer=lambda e, p: p.parent.name == classes[e.label])
    return Listing("hmdb51", classes, list(SPLITS), ordered, unlisted, both_roles=both)
