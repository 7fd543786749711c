"""The Dask task: build one shard (its tar and sidecar) from its planned videos.

A shard whose tar and sidecar exist, match their checksums and agree with the plan is skipped. A
video that fails is recorded with its reason and left out of the tar; a shard never holds part of a
video, since a video's frames are all in memory before its first member is written. A transcode
stopped by a signal (TranscodeInterrupted) is no property of the video: it propagates, the
temporary tar is removed and no sidecar is written, so a re-run redoes the shard.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from shards import store
from shards.format import SPLIT_ROLE_NAMES, STATUS_FAILED, STATUS_OK, frame_member, meta_member, sidecar_name
from shards.sources import is_url, join, local_path
from shards.writer import ShardWriter, file_sha256, read_sidecar, tar_listing, write_sidecar

from .plan import ShardSpec
from .transcode import TranscodeError, TranscodeSettings, Transcoded, transcode


def expected_members(record: dict) -> list[tuple[str, int, int]]:
    """The tar members (name, data offset, size) a sidecar says its tar holds, frames only."""
    out = []
    for v in record["videos"]:
        if v["status"] == STATUS_OK:
            for i, (off, size) in enumerate(zip(v["frame_offset"], v["frame_size"])):
                out.append((frame_member(v["key"], i), off, size))
    return out


def complete_record(out_dir: str, spec: ShardSpec, digest: str) -> dict | None:
    """The sidecar of this shard if the shard in ``out_dir`` is complete and is this plan's; else None.

    In an object store the tar's size is checked, not its bytes: an object appears only whole, and
    the sidecar is written after it, so a sidecar of this plan beside a tar of the size it records
    is a finished shard (reading every tar back would make a resume download the whole set).
    Locally a tar can be half-written by other means (a copy, a full disk), so its bytes are checked.
    """
    rec = read_sidecar(join(out_dir, sidecar_name(spec.tar)))
    if rec is None or rec.get("digest") != digest:
        return None
    if is_url(out_dir):
        return rec if store.size(join(out_dir, spec.tar)) == rec.get("tar_size") else None
    tar = Path(local_path(out_dir)) / spec.tar
    if not tar.is_file():
        return None
    if tar.stat().st_size != rec.get("tar_size") or file_sha256(tar) != rec.get("tar_sha256"):
        return None
    try:
        members = tar_listing(tar)
    except Exception:  # noqa: BLE001 - any unreadable tar means 'rebuild it'
        return None
    frames = [m for m in members if m[0].endswith(".jpg")]
    metas = {m[0] for m in members if m[0].endswith(".json")}
    if frames != expected_members(rec):
        return None
    if metas != {meta_member(v["key"]) for v in rec["videos"] if v["status"] == STATUS_OK}:
        return None
    return rec


def sample_meta(v, dataset: str, split_names: list[str], s: TranscodeSettings, n_frames: int) -> dict:
    return {
        "video_id": v.video_id, "label": v.label, "class": v.class_name, "dataset": dataset,
        "split": {name: SPLIT_ROLE_NAMES[c] for name, c in zip(split_names, v.split)},
        "fps": s.fps, "n_frames": n_frames, "height": s.height, "width": s.width, "source": v.path,
    }


def _transcode(path: str, settings: TranscodeSettings) -> Transcoded | TranscodeError:
    """The video's frames, or the reason it has none; an interruption still raises."""
    try:
        return transcode(path, settings)
    except TranscodeError as exc:
        return exc


def build_shard(spec: ShardSpec, settings: TranscodeSettings, out_dir: str, dataset: str,
                split_names: list[str], digest: str, overwrite: bool = False) -> dict:
    out = str(out_dir)
    if not overwrite:
        rec = complete_record(out, spec, digest)
        if rec is not None:
            return {**rec, "skipped": True}
    t0 = time.perf_counter()
    videos = []
    with ShardWriter(join(out, spec.tar)) as writer, ThreadPoolExecutor(1, thread_name_prefix="transcode") as pool:
        # One transcode ahead: the next video's ffmpeg runs while this thread writes the last one's
        # frames, so the core never waits on our Python between two ffmpeg runs.
        ahead = pool.submit(_transcode, spec.videos[0].path, settings) if spec.videos else None
        for i, v in enumerate(spec.videos):
            result = ahead.result()
            ahead = pool.submit(_transcode, spec.videos[i + 1].path, settings) if i + 1 < len(spec.videos) else None
            row = {"row": v.row, "video_id": v.video_id, "key": v.key}
            if isinstance(result, TranscodeError):
                videos.append({**row, "status": STATUS_FAILED, "error": str(result), "n_frames": 0,
                               "source_fps": None, "duration": None, "frame_offset": [], "frame_size": []})
                continue
            n = len(result.frames)
            where = writer.add_sample(v.key, sample_meta(v, dataset, split_names, settings, n), result.frames)
            duration = result.info.duration if result.info.duration else n / settings.fps
            videos.append({**row, "status": STATUS_OK, "error": "", "n_frames": n,
                           "source_fps": result.info.fps, "duration": duration, **where})
        tar_size = writer.commit()
    record = {
        "shard": spec.number, "tar": spec.tar, "tar_size": tar_size, "tar_sha256": writer.sha256, "digest": digest,
        "settings": dataclasses.asdict(settings), "videos": videos,
    }
    write_sidecar(join(out, sidecar_name(spec.tar)), record)
    elapsed = time.perf_counter() - t0
    return {**record, "skipped": False, "elapsed_s": elapsed}
