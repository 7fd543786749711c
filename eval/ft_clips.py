"""Which frames fine-tuning reads: a random training clip (with playback-rate and rotation
augmentation) and the test clips of a video. Pure functions of frame counts and a generator.

A clip's frames are ``clip_len`` frames ``step`` apart, ``step = stride x rate``: ``stride`` is the
protocol's temporal stride (the authors' ``pb_rate``, 4 in main_ft_mp.py), ``rate`` the
playback-rate augmentation (1 at test time). A video shorter than a clip repeats its last frame, as
the evaluation clips of shards.random_access do.
"""
from __future__ import annotations

import numpy as np

from shards.random_access import evenly_spaced_clips

ALL = "all"


def span(clip_len: int, step: int) -> int:
    """Frames from a clip's first to its last, both included."""
    return (clip_len - 1) * step + 1


def train_clip_indices(n_frames: int, clip_len: int, step: int, rng: np.random.Generator) -> np.ndarray:
    """[clip_len] frame numbers from a uniformly random start."""
    start = int(rng.integers(0, max(1, n_frames - span(clip_len, step) + 1)))
    return np.minimum(start + step * np.arange(clip_len), n_frames - 1)


def all_clip_indices(n_frames: int, clip_len: int, step: int) -> np.ndarray:
    """[K, clip_len]: every clip of a tiling from frame 0 in which no two clips share a frame (at
    least one clip, however short the video)."""
    starts = np.arange(0, max(1, n_frames - span(clip_len, step) + 1), clip_len * step)
    return np.minimum(starts[:, None] + step * np.arange(clip_len)[None, :], n_frames - 1)


def eval_clip_indices(n_frames: int, clip_len: int, step: int, clips: int | str) -> np.ndarray:
    """[K, clip_len]: ``clips`` evenly spaced clips, or every non-overlapping one with ``clips='all'``."""
    if clips == ALL:
        return all_clip_indices(n_frames, clip_len, step)
    return evenly_spaced_clips(n_frames, int(clips), clip_len, step)


def draw(rng: np.random.Generator, choices: list[int]) -> int:
    """One of ``choices``, uniformly (no draw, and no change to ``rng``, when there is one choice)."""
    return int(choices[0]) if len(choices) == 1 else int(choices[int(rng.integers(len(choices)))])
