"""Shard format version 1: names, codes and keys shared by the writer, the index and every reader.

The layout itself is documented in the README ("Shard format v1"); this module is the one place
that spells it out in code.
"""
from __future__ import annotations

import re

FORMAT_VERSION = 1
INDEX_NAME = "index.zarr"
# Written beside a shard set while a build runs (its holder's host and pid), and after it: every
# failed or missing video with its reason.
LOCK_NAME = ".build.lock"
FAILURES_NAME = "failures.tsv"
# In the name of every temporary a writer makes beside its output (".<name>.tmp-<random>").
TEMP_MARK = ".tmp-"

# split[v, s]
SPLIT_UNUSED, SPLIT_TRAIN, SPLIT_TEST = 0, 1, 2
SPLIT_CODES = {"unused": SPLIT_UNUSED, "train": SPLIT_TRAIN, "test": SPLIT_TEST}
SPLIT_ROLE_NAMES = {code: name for name, code in SPLIT_CODES.items()}

# status[v]
STATUS_OK, STATUS_FAILED, STATUS_MISSING = 0, 1, 2
STATUS_NAMES = {STATUS_OK: "ok", STATUS_FAILED: "failed", STATUS_MISSING: "missing"}
REASON_MISSING = "not found on disk"



def tar_header_ok(header: bytes) -> bool:
    """A 512-byte ustar header's stored checksum matches its bytes (the checksum field counts as spaces)."""
    text = header[148:156].rstrip(b"\0 ").strip()
    try:
        stored = int(text, 8) if text else 0
    except ValueError:
        return False
    return stored == sum(header[:148]) + 256 + sum(header[156:])


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def shard_name(prefix: str, number: int) -> str:
    return f"{prefix}-{number:06d}.tar"


def sidecar_name(tar_name: str) -> str:
    """The JSON record beside a tar: what it holds, and the videos of its plan that failed."""
    return tar_name[: -len(".tar")] + ".json"


def frame_member(key: str, i: int) -> str:
    return f"{key}.{i:05d}.jpg"


def meta_member(key: str) -> str:
    return f"{key}.json"


def safe_key(video_id: str) -> str:
    """A video id as a tar/WebDataset key: letters, digits, '_' and '-' (no dot, no slash)."""
    key = _UNSAFE.sub("_", video_id)
    return key or "_"


def unique_keys(video_ids: list[str]) -> list[str]:
    """Safe keys, made unique in the set by a numeric suffix where two ids map to the same key."""
    seen: dict[str, int] = {}
    keys = []
    taken = set()
    for vid in video_ids:
        key = safe_key(vid)
        if key in taken:
            n = seen.get(key, 1)
            while f"{key}-{n}" in taken:
                n += 1
            seen[key] = n + 1
            key = f"{key}-{n}"
        taken.add(key)
        keys.append(key)
    return keys


_SIDECAR = re.compile(r"-\d{6}\.json$")


def stray_shard_files(names, shards) -> list[str]:
    """The names among ``names`` (a folder's listing) that look like shard tars or sidecars but
    are not ``shards`` (an index's tars) or their sidecars: the leftovers of another plan, which
    a plain ``*.tar`` glob would read beside the set."""
    own = set(shards) | {sidecar_name(t) for t in shards}
    return sorted(n for n in names if not n.startswith(".") and n not in own
                  and (n.endswith(".tar") or _SIDECAR.search(n)))
