"""Check every tar of a shard set against its index: members, byte offsets and sizes, JPEG
decodability at the recorded H x W, and counts. Exit status 1 on any mismatch, and for a set that
holds no video at all; 2 when there is no readable index.

Each frame goes through the loader's decoder (shards.decode): its header's size is compared with the
index's before it is decoded, strictly (libjpeg's warnings, such as a lost tail, count), into one
reused buffer; a bad frame is named with its video and frame number. Memory stays at one frame.

    python -m shards.verify DIR [--quick]
"""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np

from .decode import CorruptFrame, SimpleJpegDecoder
from .format import STATUS_OK, frame_member, meta_member, sidecar_name, stray_shard_files
from .errors import command, parser, plural
from .index import ShardIndex, read_index
from .sources import SourceError, join
from .store import listdir, open_seekable
from .writer import read_sidecar


def verify_shard(index: ShardIndex, number: int, path: str | Path, decode: bool = True) -> list[str]:
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    try:
        raw = open_seekable(str(path))
    except SourceError as exc:      # "shard not found: ...", "cannot read ...: Permission denied"
        return [f"{name}: missing or unreadable ({exc})"]
    h, w = int(index.attrs["height"]), int(index.attrs["width"])
    keys = index.keys()
    rows = np.flatnonzero((index.shard == number) & (index.status == STATUS_OK))
    expected: dict[str, tuple[int | None, int | None, int]] = {}
    for r in rows:
        expected[meta_member(keys[r])] = (None, None, r)
        offs, sizes = index.frames_of(r)
        if len(offs) != index.n_frames[r]:
            return [f"{name}: index holds {len(offs)} frame offsets for {index.video_id[r]} but n_frames={index.n_frames[r]}"]
        for i, (o, s) in enumerate(zip(offs, sizes)):
            expected[frame_member(keys[r], i)] = (int(o), int(s), r)
    problems = []
    seen = set()
    check = FrameCheck(h, w)
    try:
        with raw, tarfile.open(fileobj=raw, mode="r:") as tf:
            for m in tf:
                if m.name not in expected:
                    problems.append(f"{name}: member {m.name!r} is not in the index")
                    continue
                seen.add(m.name)
                off, size, r = expected[m.name]
                vid = index.video_id[r]
                if off is None:
                    continue
                if (m.offset_data, m.size) != (off, size):
                    problems.append(f"{name}: {m.name} ({vid}) at byte {m.offset_data}, {m.size} bytes; "
                                    f"the index says byte {off}, {size} bytes")
                    continue
                if decode:
                    raw.seek(off)
                    bad = check(raw.read(size))
                    if bad:
                        problems.append(f"{name}: video {vid}: frame {frame_number(m.name)}: {bad} ({m.name})")
    except (tarfile.TarError, OSError) as exc:
        problems.append(f"{name}: unreadable tar: {exc}")
    for member in sorted(set(expected) - seen):
        problems.append(f"{name}: {member} ({index.video_id[expected[member][2]]}) is in the index but not in the tar")
    if decode and not problems:
        problems += digest_problems(str(path), name)
    return problems


def digest_problems(path: str, name: str) -> list[str]:
    """The tar's sha256 against its sidecar's ``tar_sha256``, for a tar whose members all check out.
    JPEG has no checksum: bytes changed in a frame's entropy-coded data often still decode (to wrong
    pixels) without a warning, so only the digest the build recorded sees them. Nothing to compare
    where there is no readable sidecar."""
    import hashlib

    rec = read_sidecar(path[: -len(name)] + sidecar_name(name))
    if not rec or not rec.get("tar_sha256"):
        return []
    h = hashlib.sha256()
    try:
        with open_seekable(path) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (SourceError, OSError) as exc:
        return [f"{name}: unreadable tar: {exc}"]
    if h.hexdigest() == rec["tar_sha256"]:
        return []
    return [f"{name}: every member checks out, but the tar's sha256 is not the one its sidecar recorded at build "
            f"time: bytes changed since (a change in a frame's entropy-coded data can decode cleanly); rebuild it"]


def _listing(shard_dir: str) -> list[str]:
    """The set folder's names; none where it cannot be listed (a web server without listings)."""
    try:
        return listdir(shard_dir)
    except (SourceError, NotImplementedError):
        return []


class FrameCheck:
    """One JPEG at a time: its header against the index's H x W, then a strict decode into one
    reused frame buffer. So verify's memory is a frame, whatever a header claims."""

    def __init__(self, height: int, width: int):
        self.h, self.w = height, width
        self.decoder = SimpleJpegDecoder()
        self.buffer = np.empty((1, height, width, 3), np.uint8)

    def __call__(self, jpeg: bytes) -> str | None:
        """None for a good frame, else what is wrong with it."""
        try:
            self.decoder.frames([jpeg], self.h, self.w, out=self.buffer)
        except CorruptFrame as exc:
            return exc.reason
        return None


def frame_number(member: str) -> str:
    """The frame number in a frame member's name (KEY.NNNNN.jpg)."""
    return str(int(member.rsplit(".", 2)[1]))


def verify(shard_dir: str | Path, decode: bool = True, progress: bool = True,
           per_shard: int = 10) -> tuple[list[str], dict]:
    from tqdm import tqdm

    index = read_index(shard_dir)
    problems: list[str] = []
    for n, tar in enumerate(tqdm(index.shards, unit="shard", disable=not progress, file=sys.stderr)):
        found = verify_shard(index, n, join(str(shard_dir), tar), decode=decode)
        if len(found) > per_shard:
            found = found[:per_shard] + [f"{tar}: ... and {len(found) - per_shard} more problems in this shard"]
        problems += found
    if not index.shards or not (index.status == STATUS_OK).any():
        problems.append(f"index: the set holds {len(index.shards)} shards and {int((index.status == STATUS_OK).sum())} "
                        f"usable videos of {len(index)} listed; an empty shard set is not usable")
    for name in stray_shard_files(_listing(str(shard_dir)), index.shards):
        problems.append(f"{name}: a tar or sidecar the index does not name (left by a build of another plan?); "
                        "a *.tar glob would read it beside the set")
    in_shards = index.shard[index.status == STATUS_OK]
    if len(in_shards) and (in_shards.min() < 0 or in_shards.max() >= len(index.shards)):
        problems.append("index: an ok video points at a shard number outside the shard list")
    stats = {"shards": len(index.shards), "videos_ok": int((index.status == STATUS_OK).sum()),
             "frames": int(index.n_frames.sum())}
    return problems, stats


@command("verify")
def main(argv: list[str] | None = None) -> int:
    p = parser("python -m shards.verify", "Check shard tars against their index.")
    p.add_argument("dir", help="shard set folder (holds the tars and index.zarr)")
    p.add_argument("--quick", action="store_true", help="check members, offsets and sizes, skip JPEG decoding")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    problems, stats = verify(args.dir, decode=not args.quick, progress=not args.no_progress)
    for line in problems:
        print(line)
    verdict = "FAILED" if problems else "OK"
    bad = len({p.split(':', 1)[0] for p in problems} - {'index'})
    print(f"{verdict}: {plural(stats['shards'], 'shard')}, {plural(stats['videos_ok'], 'video')}, "
          f"{plural(stats['frames'], 'frame')}; {plural(bad, 'shard')} with problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
