"""UCF-101: ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt; videos under <root>/<Class>/.

Class order is classInd.txt's (label = index - 1). The lists name ``<Class>/<stem>.avi``; files on disk
are matched by stem, since republished copies use other containers. Splits "1", "2", "3".
"""
from __future__ import annotations

from pathlib import Path

from shards.format import SPLIT_TEST, SPLIT_TRAIN

from .base import (AnnotationError, Listing, VideoEntry, assign_role, attach_paths, find_file,
                   numbered_lines, register, scan_videos)

SPLITS = ("1", "2", "3")


def parse_class_ind(path: Path) -> list[str]:
    classes: dict[int, str] = {}
    for n, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(f"{path}:{n}: expected '<index> <ClassName>', got {line!r}")
        classes[int(parts[0])] = parts[1]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise AnnotationError(f"{path}: class indices are not 1..{len(classes)}")
    return [classes[i] for i in range(1, len(classes) + 1)]


def parse_list(path: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(video_id, label) for each line of a trainlist/testlist; the label comes from the folder."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for n, line in numbered_lines(path):
        parts = line.split()
        rel = parts[0]
        if "/" not in rel:
            raise AnnotationError(f"{path}:{n}: expected '<Class>/<name>.avi', got {line!r}")
        cls, name = rel.split("/", 1)
        if cls not in index:
            raise AnnotationError(f"{path}:{n}: class {cls!r} is not in classInd.txt")
        label = index[cls]
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise AnnotationError(f"{path}:{n}: expected '<Class>/<name>.avi [<label>]', got {line!r}")
        if len(parts) > 1 and int(parts[1]) - 1 != label:
            raise AnnotationError(f"{path}:{n}: label {parts[1]} disagrees with folder {cls!r}")
        out.append((Path(name).stem, label))
    return out


def _one(annotations: Path, name: str) -> Path:
    found = find_file(annotations, name)
    if not found:
        raise AnnotationError(f"{name} not found under {annotations}")
    return found[0]


@register("ucf101")
def load(videos: Path, annotations: Path) -> Listing:
    classes = parse_class_ind(_one(annotations, "classInd.txt"))
    entries: dict[str, VideoEntry] = {}
    both: list[tuple[str, str]] = []
    for s, split in enumerate(SPLITS):
        for kind, code in (("trainlist", SPLIT_TRAIN), ("testlist", SPLIT_TEST)):
            for vid, label in parse_list(_one(annotations, f"{kind}0{split}.txt"), classes):
                e = entries.setdefault(vid, VideoEntry(vid, label, [0] * len(SPLITS)))
                assign_role(e, s, code, split, both)
    ordered = list(entries.values())
    unlisted = attach_paths(ordered, scan_videos(videos), lambda e: [e.video_id],
                            prefer=lambda e, p: p.parent.name == classes[e.label])
    return Listing("ucf101", classes, list(SPLITS), ordered, unlisted, both_roles=both)


def write_lists(folder: Path, classes: list[str], videos: list[tuple[str, str, list[int]]]) -> None:
    """Write classInd.txt, trainlist0N.txt and testlist0N.txt as the official lists are written (CRLF).

    ``videos``: (class, name without extension, [role in split 1, 2, 3]) with role 1 train, 2 test.
    Datasets made for tests, benchmarks and the demo use this, so they parse like the real lists.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)), newline="")
    label = {c: i + 1 for i, c in enumerate(classes)}
    for s, split in enumerate(SPLITS):
        train = "".join(f"{c}/{n}.avi {label[c]}\r\n" for c, n, roles in videos if roles[s] == SPLIT_TRAIN)
        test = "".join(f"{c}/{n}.avi\r\n" for c, n, roles in videos if roles[s] == SPLIT_TEST)
        (folder / f"trainlist0{split}.txt").write_text(train, newline="")
        (folder / f"testlist0{split}.txt").write_text(test, newline="")
