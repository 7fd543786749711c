"""CSTP's clip-pair sampling: playback rate, temporal and spatial overlap (STOR), rotation.

A pure, seeded function of (video length, frame size, rng) returning frame indices, crop boxes and
labels; the loader applies them. Every label is drawn uniformly from its candidates first and the
geometry is then built to match it exactly, so nothing is redrawn and no label is favoured (the
reference code redraws until a pair fits, which skews towards high overlap).

Temporal overlap, as the authors (data_process/datasets.py). Clip 1 takes frames ``s, s+r, ...,
s+(T-1)r``: it lasts ``(T-1)r`` frames. For overlap rate gamma_t, clip 2 starts
``temporal_shift(gamma_t, T, r) = int((1-gamma_t) (T-1) r)`` frames before or after clip 1, so the
two clips share a gamma_t share of their duration (the paper's tau_o / tau; exactly where
``(1-gamma_t)(T-1)`` is whole, as for T=16 and N=5, else the int() rounds the shift down by under
one frame). The rate is drawn among the rates at which one clip fits (the authors' ``max_pb``), then
the overlap among the candidates whose pair fits at that rate: the labels are always true, and on
videos long enough for the smallest overlap at the fastest rate both are uniform and independent
(on shorter ones fast rates come with large overlaps only, as in the authors' redraw loop). A
video shorter than one clip at the slowest rate (``min_frames(cfg)``) cannot give a pair:
``sample_pair`` raises and the loaders leave such videos out, with a count (the authors loop it).

Spatial overlap. Crop 1 has a multi-scale size (area fraction and aspect ratio drawn from ranges);
crop 2 has the same w x h, offset by (dx, dy) so that area(crop1 & crop2) / area(crop1) = gamma_s.
Sizes are capped so that the smallest candidate fits in the frame (a deterministic shrink, not a
redraw). Offsets are whole pixels, so the measured rate is within ``spatial_tolerance(w, h)``
(one pixel row or column, relative) of gamma_s. The union of the two crops is placed uniformly in
the frame and which crop takes which corner is drawn, so the crops stay inside the frame.

Rotation is drawn per clip; the training device applies it after the flip (train.augment), so the
label describes what the network sees and the spatial label stays true.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


def overlap_candidates(n: int) -> tuple[float, ...]:
    """The paper's N evenly spaced rates: 1/N, 2/N, ..., 1 (N = 5: 0.2, 0.4, 0.6, 0.8, 1.0)."""
    if not 2 <= n <= 16:
        raise ValueError(f"number of overlap candidates must be in 2..16, got {n}")
    return tuple(round(k / n, 6) for k in range(1, n + 1))


@dataclasses.dataclass(frozen=True)
class PairConfig:
    clip_len: int = 16
    rates: tuple[int, ...] = (1, 2, 4, 8)
    temporal_overlaps: tuple[float, ...] = overlap_candidates(5)
    spatial_overlaps: tuple[float, ...] = overlap_candidates(5)
    # crop area / frame area, the authors' range; crops too large for the smallest spatial overlap are
    # shrunk, so at most ~0.54 of the frame is used (median ~0.41; tests/shards/test_sampling.py).
    # On 256-px-high frames every crop side is >= 112 px.
    area_range: tuple[float, float] = (0.2, 1.0)
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3)
    rotations: tuple[int, ...] = (0, 90, 180, 270)

    def __post_init__(self):
        if self.clip_len < 2:
            raise ValueError("clip_len must be >= 2")
        if not self.rates or any(r < 1 for r in self.rates):
            raise ValueError(f"rates must be positive integers, got {self.rates}")
        for name in ("temporal_overlaps", "spatial_overlaps"):
            c = getattr(self, name)
            if not c or any(not 0 < g <= 1 for g in c) or list(c) != sorted(set(c)):
                raise ValueError(f"{name} must be increasing rates in (0, 1], got {c}")
        shifts = [temporal_shift(g, self.clip_len, min(self.rates)) for g in self.temporal_overlaps]
        if len(set(shifts)) != len(shifts):
            raise ValueError(f"temporal overlaps {self.temporal_overlaps} give shifts {shifts} frames at "
                             f"T={self.clip_len}, rate {min(self.rates)}; they must be distinct")
        if not 0 < self.area_range[0] <= self.area_range[1] <= 1:
            raise ValueError(f"area_range must be within (0, 1], got {self.area_range}")
        if any(r % 90 for r in self.rotations) or not self.rotations:
            raise ValueError(f"rotations must be multiples of 90, got {self.rotations}")


def temporal_shift(gamma_t: float, clip_len: int, rate: int) -> int:
    """Frames between the two clips' starts: the authors' ``int((1 - g) * clip_range)``, clip_range
    the clip's duration (T-1)r. The 1e-9 keeps float error (0.6 * 15 = 8.999...) from losing a frame."""
    return int((1 - gamma_t) * (clip_len - 1) * rate + 1e-9)


def pair_span(rate: int, shift: int, clip_len: int) -> int:
    """Frames from the earlier clip's first to the later clip's last, both included."""
    return (clip_len - 1) * rate + shift + 1


def min_frames(cfg: PairConfig) -> int:
    """Shortest video that yields a pair: one clip at the slowest rate (overlap 1 then fits)."""
    return pair_span(min(cfg.rates), 0, cfg.clip_len)


def spatial_tolerance(w: int, h: int) -> float:
    """Bound on |measured - gamma_s| from whole-pixel offsets."""
    return 1.0 / min(w, h)


@dataclasses.dataclass(frozen=True)
class PairSample:
    rate: int                 # index into cfg.rates
    overlap_t: int            # index into cfg.temporal_overlaps
    overlap_s: int            # index into cfg.spatial_overlaps
    rot1: int                 # index into cfg.rotations
    rot2: int
    idx1: np.ndarray          # [T] frame indices of clip 1
    idx2: np.ndarray          # [T] frame indices of clip 2
    box1: tuple[int, int, int, int]   # x, y, w, h
    box2: tuple[int, int, int, int]


def _crop_size(height: int, width: int, cfg: PairConfig, rng: np.random.Generator) -> tuple[int, int]:
    area = rng.uniform(*cfg.area_range) * height * width
    log_ar = rng.uniform(math.log(cfg.aspect_range[0]), math.log(cfg.aspect_range[1]))
    ar = math.exp(log_ar)
    w = min(width, max(2, int(round(math.sqrt(area * ar)))))
    h = min(height, max(2, int(round(math.sqrt(area / ar)))))
    g_min = cfg.spatial_overlaps[0]
    # Cap the size so the smallest overlap fits: with shifts up to (W-w, H-h) the least reachable
    # overlap is max(0, 1-(W-w)/w) * max(0, 1-(H-h)/h). Shrinking keeps the aspect and is deterministic.
    while (max(0.0, 1 - (width - w) / w) * max(0.0, 1 - (height - h) / h) > g_min - 1.0 / min(w, h)) and min(w, h) > 4:
        w, h = max(2, int(w * 0.97)), max(2, int(h * 0.97))
    return w, h


def _offsets(w: int, h: int, gamma: float, max_dx: int, max_dy: int, rng: np.random.Generator) -> tuple[int, int]:
    """Whole-pixel (dx, dy) >= 0 with (w-dx)(h-dy) / (w*h) as close to gamma as pixels allow."""
    if gamma >= 1.0:
        return 0, 0
    target = gamma * w * h
    # overlap width ox ranges so that the matching overlap height fits: h - max_dy <= target/ox <= h
    lo = max(w - min(max_dx, w), target / h)
    hi = min(w, target / max(h - min(max_dy, h), 1e-9))
    if lo > hi:
        raise ValueError(f"crop {w}x{h} cannot reach overlap {gamma} within shifts ({max_dx}, {max_dy})")
    a, b = math.ceil(lo), math.floor(hi)
    # A range narrower than a pixel holds no whole width: the nearest one is off by under a column.
    ox = int(rng.integers(a, b + 1)) if a <= b else min(w, max(1, round((lo + hi) / 2)))
    oy = min(h, max(h - max_dy, int(round(target / ox))))
    return w - ox, h - oy


def sample_pair(n_frames: int, height: int, width: int, cfg: PairConfig, rng: np.random.Generator) -> PairSample:
    T = cfg.clip_len
    need = min_frames(cfg)
    if n_frames < need:
        raise ValueError(f"a video of {n_frames} frames is shorter than the {need} a clip pair needs "
                         f"(T={T}, rate {min(cfg.rates)})")
    # temporal: the rate among those where one clip fits, the overlap among those whose pair fits
    fitting = [i for i, r in enumerate(cfg.rates) if pair_span(r, 0, T) <= n_frames]
    ri = fitting[int(rng.integers(len(fitting)))]
    r = cfg.rates[ri]
    shifts = [temporal_shift(g, T, r) for g in cfg.temporal_overlaps]
    fits = [i for i, d in enumerate(shifts) if pair_span(r, d, T) <= n_frames]
    ti = fits[int(rng.integers(len(fits)))]
    shift = shifts[ti]
    start = int(rng.integers(0, n_frames - pair_span(r, shift, T) + 1))
    first = start + r * np.arange(T)
    second = first + shift
    idx1, idx2 = (first, second) if rng.integers(2) == 0 else (second, first)
    # spatial
    si = int(rng.integers(len(cfg.spatial_overlaps)))
    w, h = _crop_size(height, width, cfg, rng)
    dx, dy = _offsets(w, h, cfg.spatial_overlaps[si], width - w, height - h, rng)
    ux = int(rng.integers(0, width - (w + dx) + 1))
    uy = int(rng.integers(0, height - (h + dy) + 1))
    flip_x, flip_y = rng.integers(2), rng.integers(2)
    x1, x2 = (ux, ux + dx) if flip_x == 0 else (ux + dx, ux)
    y1, y2 = (uy, uy + dy) if flip_y == 0 else (uy + dy, uy)
    rot1, rot2 = (int(x) for x in rng.integers(len(cfg.rotations), size=2))
    return PairSample(ri, ti, si, rot1, rot2, idx1, idx2, (x1, y1, w, h), (x2, y2, w, h))


def measured_overlaps(s: PairSample) -> tuple[float, float]:
    """(temporal, spatial) overlap as measured from the indices and boxes alone: the share of clip
    1's duration (first to last frame) that clip 2 covers, and the share of crop 1's area."""
    dur = int(s.idx1[-1] - s.idx1[0])
    common = min(s.idx1[-1], s.idx2[-1]) - max(s.idx1[0], s.idx2[0])
    t = max(0, int(common)) / dur
    (x1, y1, w, h), (x2, y2, _, _) = s.box1, s.box2
    ix = max(0, min(x1 + w, x2 + w) - max(x1, x2))
    iy = max(0, min(y1 + h, y2 + h) - max(y1, y2))
    return t, ix * iy / (w * h)
