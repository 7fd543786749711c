"""Which frames and which pixels fine-tuning reads: pure functions of frame counts, frame sizes and a
generator, each following the authors' data_process/datasets.py (UcfFineTune) and
preprocess_data.py (ClipRandomSizedCrop), written from reading them. Frame numbers here start at 0
(the authors' files start at 1).

A clip's frames are ``clip_len`` frames ``step`` apart, ``step = stride x rate``: ``stride`` is the
protocol's temporal stride (the authors' ``pb_rate``, 4), ``rate`` the playback-rate augmentation of
Table 1's rows (1 at test time). ``reach = (clip_len - 1) x step`` is the authors' ``clip_range``.
"""
from __future__ import annotations

import math

import numpy as np

from shards.random_access import evenly_spaced_clips

ALL = "all"
AUTHORS = "authors"


def reach(clip_len: int, step: int) -> int:
    """Frames from a clip's first to its last (the authors' clip_range)."""
    return (clip_len - 1) * step


def looped(clip_len: int, step: int, last: int) -> np.ndarray:
    """0, step, 2 step, ... back to 0 after passing ``last``: how the authors fill a clip from a video
    too short for one (their training clips wrap after the last frame, their test clips one earlier)."""
    out, k = [], 0
    while len(out) < clip_len:
        out.append(k)
        k += step
        if k > last:
            k = 0
    return np.array(out, dtype=np.int64)


def train_clip_indices(n_frames: int, clip_len: int, step: int, rng: np.random.Generator) -> np.ndarray:
    """[clip_len] frame numbers: a uniformly random start among those whose clip fits (_get_train_clip,
    also their validation clip); a video of at most ``reach`` frames loops from frame 0."""
    r = reach(clip_len, step)
    if n_frames - r <= 0:
        return looped(clip_len, step, n_frames - 1)
    return int(rng.integers(0, n_frames - r)) + step * np.arange(clip_len)


def authors_test_clips(n_frames: int, clip_len: int, step: int) -> np.ndarray:
    """[K, clip_len] (_get_test_clip): clips starting every ``reach`` frames from frame 0 while one fits,
    plus one clip ending at the last frame (it may repeat the one before: the authors average it in
    all the same); a video of at most ``reach`` frames gives one looped clip that never reaches its
    last frame (their test loop wraps one frame early)."""
    r = reach(clip_len, step)
    if n_frames - r <= 0:
        return looped(clip_len, step, n_frames - 2)[None]
    starts = np.arange(0, n_frames - r, max(r, 1))
    clips = starts[:, None] + step * np.arange(clip_len)[None, :]
    last = n_frames - 1 - r + step * np.arange(clip_len)
    return np.vstack([clips, last[None]])


def all_clip_indices(n_frames: int, clip_len: int, step: int) -> np.ndarray:
    """[K, clip_len]: every clip of a tiling from frame 0 in which no two clips share a frame (at
    least one clip; a short video repeats its last frame)."""
    span = reach(clip_len, step) + 1
    starts = np.arange(0, max(1, n_frames - span + 1), clip_len * step)
    return np.minimum(starts[:, None] + step * np.arange(clip_len)[None, :], n_frames - 1)


def eval_clip_indices(n_frames: int, clip_len: int, step: int, clips: int | str) -> np.ndarray:
    """[K, clip_len] by the rule ``clips``: 'authors', 'all', or that many evenly spaced clips."""
    if clips == AUTHORS:
        return authors_test_clips(n_frames, clip_len, step)
    if clips == ALL:
        return all_clip_indices(n_frames, clip_len, step)
    return evenly_spaced_clips(n_frames, int(clips), clip_len, step)


def eligible_rates(n_frames: int, clip_len: int, stride: int, rates: list[int]) -> list[int]:
    """The rates at which one clip fits the video (the authors' max_pb rule); the smallest rate when
    none does (its clip then loops, as a short video's at the base stride)."""
    fit = [r for r in rates if n_frames - reach(clip_len, stride * r) > 0]
    return fit or [min(rates)]


def draw(rng: np.random.Generator, choices: list[int]) -> int:
    """One of ``choices``, uniformly (no draw, and no change to ``rng``, when there is one choice)."""
    return int(choices[0]) if len(choices) == 1 else int(choices[int(rng.integers(len(choices)))])


def random_sized_box(height: int, width: int, area: tuple[float, float], aspect: tuple[float, float],
                     attempts: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(x, y, w, h): ClipRandomSizedCrop's box. Up to ``attempts`` draws of an area fraction in
    ``area`` and an aspect ratio in ``aspect`` (w and h swapped with p 0.5); the first that fits the
    frame is placed uniformly at random. None fits: the centre square of the short side (their
    fallback scales the short side to the crop and takes the centre)."""
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        ratio = rng.uniform(*aspect)
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if rng.random() < 0.5:
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side
