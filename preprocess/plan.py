"""Deterministic shard plan: which videos go into which shard, the same for the same inputs.

A seeded shuffle mixes classes across shards (a shard holding one class would make a streaming
shuffle buffer useless); then videos are cut into shards by count or by a byte target.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random

from shards.format import shard_name, unique_keys

from .adapters import Listing, load_listing
from shards.errors import InputError
from .transcode import TranscodeSettings


@dataclasses.dataclass(frozen=True)
class PlannedVideo:
    row: int           # row in the index (position in the listing)
    video_id: str
    key: str
    path: str
    label: int
    class_name: str
    split: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    number: int
    tar: str
    videos: tuple[PlannedVideo, ...]

    def digest(self, settings: dict) -> str:
        """Identity of the work: same videos, same keys, same settings -> same shard."""
        payload = {"tar": self.tar, "videos": [(v.row, v.video_id, v.key) for v in self.videos], "settings": settings}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# A small set cut into 64-video shards gives one or two shards: too few to keep a few ranks x loader
# workers reading in parallel. Below MIN_SHARDS * MAX_VIDEOS_PER_SHARD videos, shards shrink.
MAX_VIDEOS_PER_SHARD = 64
MIN_SHARDS = 16


def auto_videos_per_shard(n_videos: int) -> int:
    """Videos per shard for the default plan: at most 64, and at least MIN_SHARDS shards (one video
    per shard for sets of fewer than 2 x MIN_SHARDS videos)."""
    return max(1, min(MAX_VIDEOS_PER_SHARD, n_videos // MIN_SHARDS))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0      # unreadable: the transcode records why; it weighs nothing in the plan


def plan_shards(listing: Listing, prefix: str, *, seed: int = 0, videos_per_shard: int | None = None,
                shard_bytes: int | None = None) -> list[ShardSpec]:
    """Cut the videos present on disk into shards; by count, or by source bytes when ``shard_bytes``."""
    if videos_per_shard is not None and shard_bytes is not None:
        raise ValueError("give one of videos_per_shard and shard_bytes, not both")
    if shard_bytes is None and videos_per_shard is None:
        videos_per_shard = auto_videos_per_shard(sum(e.path is not None for e in listing.entries))
    if videos_per_shard is not None and videos_per_shard < 1:
        raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    keys = unique_keys([e.video_id for e in listing.entries])
    videos = [
        PlannedVideo(row, e.video_id, keys[row], e.path, e.label,
                     listing.classes[e.label] if e.label >= 0 else "", tuple(e.split))
        for row, e in enumerate(listing.entries) if e.path is not None
    ]
    random.Random(seed).shuffle(videos)
    groups: list[list[PlannedVideo]] = []
    if videos_per_shard is not None:
        groups = [videos[i:i + videos_per_shard] for i in range(0, len(videos), videos_per_shard)]
    else:
        size = 0
        for v in videos:
            if not groups or size >= shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(v)
            size += _size(v.path)
    return [ShardSpec(n, shard_name(prefix, n), tuple(g)) for n, g in enumerate(groups)]


@dataclasses.dataclass
class BuildPlan:
    listing: Listing
    specs: list
    settings: object         # TranscodeSettings
    identity: dict
    attrs: dict


def plan_build(args) -> BuildPlan:
    """The listing, the shard plan, and the index attributes the build will write."""


    prefix = args.name or args.dataset
    listing = load_listing(args.dataset, args.videos, args.annotations)
    print(listing.report(), flush=True)
    if not listing.entries:
        raise InputError(f"the split files under {args.annotations} list no videos")
    if not listing.present:
        raise InputError(f"none of the {len(listing.entries)} listed videos is under {args.videos}; "
                         "--videos wants the folder holding them (any depth)")
    per_shard = args.videos_per_shard
    if per_shard is None and args.shard_size is None:
        per_shard = auto_videos_per_shard(len(listing.present))
    specs = plan_shards(listing, prefix, seed=args.seed, videos_per_shard=per_shard, shard_bytes=args.shard_size)
    settings = TranscodeSettings(fps=args.fps, height=args.size[0], width=args.size[1],
                                 jpeg_quality=args.jpeg_quality, timeout=args.timeout)
    # The timeout changes no byte of the output, so it is not part of a shard's identity.
    identity = {k: v for k, v in dataclasses.asdict(settings).items() if k != "timeout"}
    attrs = {
        "dataset": args.dataset, "fps": args.fps, "height": args.size[0], "width": args.size[1],
        "classes": listing.classes, "splits": listing.splits, "shards": [s.tar for s in specs],
        "settings": {**identity, "seed": args.seed, "videos_per_shard": per_shard,
                     "shard_size": args.shard_size, "name": prefix},
    }
    return BuildPlan(listing, specs, settings, identity, attrs)
