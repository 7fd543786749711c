"""shards.clips: decode and clip assembly."""
from __future__ import annotations

import numpy as np
import pytest
import simplejpeg
import torch
import torch.nn.functional as F

from shards.clips import center_box, clip_from_frames, decode_jpegs


def test_decode_jpegs_matches_simplejpeg():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(3)]
    jpegs = [simplejpeg.encode_jpeg(i, quality=95) for i in imgs]
    out = decode_jpegs(jpegs, 20, 30)
    assert out.shape == (3, 20, 30, 3)
    for j, o in zip(jpegs, out):
        assert np.array_equal(o, simplejpeg.decode_jpeg(j))


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_clip_equals_crop_then_resize_then_rotate(degrees):
    rng = np.random.default_rng(degrees)
    frames = rng.integers(0, 255, (10, 40, 50, 3), dtype=np.uint8)
    which = [7, 2, 2, 9]
    box = (5, 3, 24, 24)
    got = clip_from_frames(frames, which, box, degrees, (16, 16))
    x, y, w, h = box
    ref = torch.from_numpy(frames[which, y:y + h, x:x + w]).permute(0, 3, 1, 2).contiguous()
    ref = F.interpolate(ref, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    ref = torch.rot90(ref.permute(1, 0, 2, 3), degrees // 90, dims=(2, 3))
    assert got.shape == (3, 4, 16, 16) and got.dtype == torch.uint8
    assert (got.int() - ref.int()).abs().max() <= 1


def test_center_box():
    assert center_box(128, 171, 112) == (29, 8, 112, 112)
    with pytest.raises(ValueError, match="larger"):
        center_box(100, 100, 112)
