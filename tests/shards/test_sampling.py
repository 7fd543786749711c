"""shards.sampling: the clip-pair sampler, tested by property over thousands of draws."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from shards.sampling import (PairConfig, measured_overlaps, min_frames, overlap_candidates, overlap_frames,
                             sample_pair, spatial_tolerance)


@pytest.mark.parametrize("n_cand", [2, 3, 5, 7])
def test_measured_overlaps_equal_the_labels(n_cand):
    cfg = PairConfig(temporal_overlaps=overlap_candidates(n_cand), spatial_overlaps=overlap_candidates(n_cand))
    rng = np.random.default_rng(n_cand)
    for i in range(3000):
        n = int(rng.integers(min_frames(cfg), 400))
        H, W = ((128, 171), (240, 320), (160, 213), (256, 341))[i % 4]
        s = sample_pair(n, H, W, cfg, rng)
        t, sp = measured_overlaps(s)
        gt, gs = cfg.temporal_overlaps[s.overlap_t], cfg.spatial_overlaps[s.overlap_s]
        assert t == overlap_frames(gt, cfg.clip_len) / cfg.clip_len
        assert abs(t - gt) <= 0.5 / cfg.clip_len + 1e-9
        x, y, w, h = s.box1
        assert abs(sp - gs) <= spatial_tolerance(w, h), (s, sp, gs)
        # same rate, same crop size, both inside the video and the frame
        r = cfg.rates[s.rate]
        assert np.all(np.diff(s.idx1) == r) and np.all(np.diff(s.idx2) == r)
        assert s.box1[2:] == s.box2[2:]
        assert 0 <= min(s.idx1.min(), s.idx2.min()) and max(s.idx1.max(), s.idx2.max()) < n
        for bx, by, bw, bh in (s.box1, s.box2):
            assert 0 <= bx and bx + bw <= W and 0 <= by and by + bh <= H


def test_labels_are_uniform_over_the_candidates():
    cfg = PairConfig()
    rng = np.random.default_rng(0)
    draws = [sample_pair(300, 128, 171, cfg, rng) for _ in range(6000)]
    for field, k in (("overlap_t", 5), ("overlap_s", 5), ("rot1", 4), ("rot2", 4), ("rate", 4)):
        counts = np.bincount([getattr(d, field) for d in draws], minlength=k)
        assert chisquare(counts).pvalue > 1e-4, (field, counts)


def test_overlap_labels_stay_uniform_when_only_some_rates_fit():
    cfg = PairConfig()
    rng = np.random.default_rng(1)
    draws = [sample_pair(80, 128, 171, cfg, rng) for _ in range(4000)]
    # at 80 frames only rates 1 and 2 fit the smallest overlap (span 2*29-1 = 57; rate 4 needs 113)
    assert {cfg.rates[d.rate] for d in draws} == {1, 2}
    assert chisquare(np.bincount([d.overlap_t for d in draws], minlength=5)).pvalue > 1e-4
    # clip 2 comes before clip 1 as often as after
    before = sum(d.idx2[0] < d.idx1[0] for d in draws if d.overlap_t < 4)
    assert 0.45 < before / sum(d.overlap_t < 4 for d in draws) < 0.55


def test_short_videos_are_refused_with_the_length_they_need():
    cfg = PairConfig()
    assert min_frames(cfg) == 29  # 2*16 - round(0.2*16) - 1 + 1
    sample_pair(29, 128, 171, cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="28 frames is shorter than the 29"):
        sample_pair(28, 128, 171, cfg, np.random.default_rng(0))


def test_same_seed_same_pair():
    a = sample_pair(200, 128, 171, PairConfig(), np.random.default_rng(7))
    b = sample_pair(200, 128, 171, PairConfig(), np.random.default_rng(7))
    assert a.box1 == b.box1 and np.array_equal(a.idx2, b.idx2) and a.rot2 == b.rot2


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        PairConfig(clip_len=4, temporal_overlaps=overlap_candidates(7))
    with pytest.raises(ValueError, match="multiples of 90"):
        PairConfig(rotations=(0, 45))
    with pytest.raises(ValueError, match="2..16"):
        overlap_candidates(1)


def test_crops_reach_the_network_at_scale_at_most_one_on_256_pixel_frames():
    """With the default area range every crop side is >= 112 px on 256x341 frames, so the 112x112
    network input is never upsampled (at 128x171 the same crops must be, by about 1.3x)."""
    rng = np.random.default_rng(5)
    sides = [min(sample_pair(300, 256, 341, PairConfig(), rng).box1[2:]) for _ in range(2000)]
    assert min(sides) >= 112


def test_large_crops_on_tall_frames_still_realise_every_overlap():
    # a crop nearly as tall as the frame leaves a sub-pixel range of overlap widths: the nearest is taken
    rng = np.random.default_rng(6)
    cfg = PairConfig(area_range=(0.6, 1.0))
    for _ in range(2000):
        s = sample_pair(300, 160, 213, cfg, rng)
        assert abs(measured_overlaps(s)[1] - cfg.spatial_overlaps[s.overlap_s]) <= spatial_tolerance(*s.box1[2:])
