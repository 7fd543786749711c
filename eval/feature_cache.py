"""Cached clip features, keyed by what they are made of: the model's content (never its path: a new
checkpoint written over an old one must not reuse the old one's features), the feature settings and
the shard set's content."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_identity(ckpt: str, backbone: str, width: float, seed: int) -> str:
    """The checkpoint file's digest; for ``--ckpt none``, what builds the random weights."""
    if ckpt == "none":
        return f"random:{backbone}:{width}:{seed}"
    return f"sha256:{file_digest(ckpt)}"


def shard_identity(index) -> str:
    """A digest of the index: its attributes and every video's id, frame count and frame bytes' place
    and size, so shards rebuilt at the same path are a different shard set."""
    h = hashlib.sha256(json.dumps(index.attrs, sort_keys=True, default=str).encode())
    h.update("\0".join(str(v) for v in index.video_id).encode())
    for a in (index.n_frames, index.status, index.frame_offset, index.frame_size):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cache_path(folder: str | Path, **settings) -> Path:
    """``folder/features-<key>.npz``, the key a digest of ``settings`` (JSON-able values)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return Path(folder) / f"features-{key}.npz"
