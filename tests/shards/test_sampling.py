"""shards.sampling: the clip-pair sampler, tested by property over thousands of draws."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from shards.sampling import (PairConfig, measured_overlaps, min_frames, overlap_candidates, pair_span,
                             sample_pair, spatial_tolerance, temporal_shift)


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
        r = cfg.rates[s.rate]
        # the share of clip 1's duration that clip 2 covers: the label, or above it by less than a frame
        assert gt - 1e-9 <= t < gt + 1 / ((cfg.clip_len - 1) * r) + 1e-9
        assert abs(int(s.idx2[0]) - int(s.idx1[0])) == temporal_shift(gt, cfg.clip_len, r)
        x, y, w, h = s.box1
        assert abs(sp - gs) <= spatial_tolerance(w, h), (s, sp, gs)
        # same rate, same crop size, both inside the video and the frame
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


def test_the_shift_is_the_authors_rule():
    """data_process/datasets.py: start_2 = start_1 -+ int((1 - tem_rate) * clip_range), clip_range =
    (sample_duration - 1) * sample_rate; at T=16, N=5 the shifts are 12r, 9r, 6r, 3r, 0 frames."""
    for r in (1, 2, 4, 8):
        assert [temporal_shift(g, 16, r) for g in overlap_candidates(5)] == [12 * r, 9 * r, 6 * r, 3 * r, 0]
    assert [temporal_shift(g, 8, 1) for g in overlap_candidates(4)] == [5, 3, 1, 0]     # int(5.25), int(3.5), ...
    assert [temporal_shift(g, 8, 4) for g in overlap_candidates(4)] == [21, 14, 7, 0]   # not multiples of r
    assert pair_span(2, 18, 16) == 30 + 18 + 1


def test_a_rate_is_allowed_where_one_clip_fits():
    """The authors' max_pb: rate 2^k is drawn where (T-1) 2^k fits the video. The overlap is then drawn
    among the candidates whose pair fits: a fast rate on a short video comes with large overlaps only."""
    cfg = PairConfig()
    rng = np.random.default_rng(1)
    draws = [sample_pair(80, 128, 171, cfg, rng) for _ in range(4000)]
    # 80 frames hold one clip at rates 1, 2 and 4 ((16-1)*4 + 1 = 61), not 8 (121)
    assert {cfg.rates[d.rate] for d in draws} == {1, 2, 4}
    assert chisquare(np.bincount([d.rate for d in draws], minlength=3)[:3]).pvalue > 1e-4
    at4 = [d.overlap_t for d in draws if cfg.rates[d.rate] == 4]
    # at rate 4 only shifts 12 and 0 fit (61 + 12 = 73 <= 80; 61 + 24 = 85 does not): overlaps 0.8 and 1.0
    assert set(at4) == {3, 4} and chisquare(np.bincount(at4)[3:]).pvalue > 1e-4
    at1 = [d.overlap_t for d in draws if cfg.rates[d.rate] == 1]
    assert chisquare(np.bincount(at1, minlength=5)).pvalue > 1e-4
    # clip 2 comes before clip 1 as often as after
    before = sum(d.idx2[0] < d.idx1[0] for d in draws if d.overlap_t < 4)
    assert 0.45 < before / sum(d.overlap_t < 4 for d in draws) < 0.55


def test_short_videos_are_refused_with_the_length_they_need():
    cfg = PairConfig()
    assert min_frames(cfg) == 16  # one clip at rate 1 (the pair is then two copies of it: overlap 1.0)
    s = sample_pair(16, 128, 171, cfg, np.random.default_rng(0))
    assert s.overlap_t == 4 and cfg.rates[s.rate] == 1 and np.array_equal(s.idx1, np.arange(16))
    with pytest.raises(ValueError, match="15 frames is shorter than the 16"):
        sample_pair(15, 128, 171, cfg, np.random.default_rng(0))


def test_same_seed_same_pair():
    a = sample_pair(200, 128, 171, PairConfig(), np.random.default_rng(7))
    b = sample_pair(200, 128, 171, PairConfig(), np.random.default_rng(7))
    assert a.box1 == b.box1 and np.array_equal(a.idx2, b.idx2) and a.rot2 == b.rot2


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        PairConfig(clip_len=4, temporal_overlaps=overlap_candidates(7))   # shifts 2, 2, 1, 1, 0, 0, 0
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


def test_crop_area_is_capped_where_the_smallest_overlap_would_not_fit():
    """The authors draw the area in 20-100% of the frame and redraw the second crop until it fits, so
    a large first crop can only get a large overlap label (the crop's scale would tell the label).
    Ours caps the size instead: every label stays reachable from every crop, at the price of crops of
    at most ~54% of the frame (median ~41%)."""
    rng = np.random.default_rng(8)
    cfg = PairConfig()
    area = np.array([np.prod(sample_pair(300, 256, 341, cfg, rng).box1[2:]) / (256 * 341) for _ in range(4000)])
    assert 0.19 <= area.min() and area.max() <= 0.55 and 0.38 <= np.median(area) <= 0.44
    for _ in range(200):     # the largest crops still take the smallest overlap
        s = sample_pair(300, 256, 341, PairConfig(area_range=(1.0, 1.0), spatial_overlaps=(0.2, 1.0)), rng)
        if s.overlap_s == 0:
            assert abs(measured_overlaps(s)[1] - 0.2) <= spatial_tolerance(*s.box1[2:])
