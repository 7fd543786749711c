"""What a build did, per split and per video: the summary table and the failures file."""
from __future__ import annotations

import numpy as np

from shards.format import STATUS_FAILED, STATUS_MISSING, STATUS_NAMES, STATUS_OK
from shards.sampling import PairConfig, min_frames
from shards.store import write_bytes

# The paper's clip (16 frames) and the span of one training pair at the default sampling (rate 1,
# smallest temporal overlap: 29 frames). The build does not know the clip length training will use,
# so it counts against the paper's.
CLIP_FRAMES = PairConfig().clip_len
PAIR_FRAMES = min_frames(PairConfig())

_COUNTED = (STATUS_OK, STATUS_FAILED, STATUS_MISSING)


def split_table(status: np.ndarray, split: np.ndarray, split_names: list[str], roles: dict[int, str]) -> str:
    """One block per split: a row per role (train / test / val ...) with its ok, failed, missing counts."""
    width = max(len(r) for r in roles.values()) + 2
    head = "".join(f"{STATUS_NAMES[s]:>8s}" for s in _COUNTED)
    lines = []
    for col, name in enumerate(split_names):
        lines.append(f"split {name}:".ljust(width + 2) + head)
        for code in sorted(roles, key=lambda c: (c == 0, c)):
            member = split[:, col] == code
            if member.any():
                lines.append(f"  {roles[code]:<{width}s}" + "".join(f"{int((status[member] == s).sum()):8d}" for s in _COUNTED))
    return "\n".join(lines)


def failures_tsv(video_id, status: np.ndarray, error, paths: list[str | None]) -> bytes:
    """Every failed or missing video: id, status, reason, the file (empty where none was found)."""
    lines = ["video_id\tstatus\treason\tpath"]
    for r in np.flatnonzero(status != STATUS_OK):
        reason = " ".join(str(error[r]).split())       # a reason never breaks the row
        lines.append(f"{video_id[r]}\t{STATUS_NAMES[int(status[r])]}\t{reason}\t{paths[r] or ''}")
    return ("\n".join(lines) + "\n").encode()


def write_failures(path, video_id, status, error, paths) -> int:
    write_bytes(str(path), failures_tsv(video_id, status, error, paths))
    return int((status != STATUS_OK).sum())


def short_videos(video_id, status: np.ndarray, n_frames: np.ndarray, examples: int = 3) -> str:
    """How many built videos are too short for the paper's clip, and for a default training pair:
    training leaves them out, so the build says so first."""
    ok = status == STATUS_OK
    under_clip = np.flatnonzero(ok & (n_frames < CLIP_FRAMES))
    under_pair = np.flatnonzero(ok & (n_frames < PAIR_FRAMES))
    line = f"short videos: {len(under_clip)} have fewer frames than the paper's {CLIP_FRAMES}-frame clip"
    if PAIR_FRAMES != CLIP_FRAMES:
        line += f", {len(under_pair)} fewer than the {PAIR_FRAMES} a default training pair spans (rate 1)"
    line += "; training at the defaults leaves those out"
    if len(under_pair):
        line += ", e.g. " + ", ".join(f"{video_id[r]} ({int(n_frames[r])})" for r in under_pair[:examples])
    return line
