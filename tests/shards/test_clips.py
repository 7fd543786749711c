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
@pytest.mark.parametrize("size", [(16, 16), (32, 40)])       # shrunk (torch's kernel), enlarged (OpenCV's)
def test_clip_equals_crop_then_resize_then_rotate(degrees, size):
    rng = np.random.default_rng(degrees)
    frames = rng.integers(0, 255, (10, 40, 50, 3), dtype=np.uint8)
    which = [7, 2, 2, 9]
    box = (5, 3, 24, 24)
    got = clip_from_frames(frames, which, box, degrees, size)
    x, y, w, h = box
    ref = torch.from_numpy(frames[which, y:y + h, x:x + w]).permute(0, 3, 1, 2).contiguous()
    ref = F.interpolate(ref, size=size, mode="bilinear", antialias=True, align_corners=False)
    ref = torch.rot90(ref.permute(1, 0, 2, 3), degrees // 90, dims=(2, 3))
    assert got.shape == ref.shape and got.dtype == torch.uint8 and got.is_contiguous()
    assert (got.int() - ref.int()).abs().max() <= 1


def test_center_box():
    assert center_box(128, 171, 112) == (29, 8, 112, 112)
    with pytest.raises(ValueError, match="larger"):
        center_box(100, 100, 112)


# -- the loader's clips against the path they were made by before decoding became a stage -----------
def reference_clip(frames: np.ndarray, which, box, size) -> torch.Tensor:
    """The clip as the loader made it before shards.decode: gather the crop, antialiased bilinear
    resize through F.interpolate, then [3, T, h, w]."""
    x, y, w, h = box
    t = torch.from_numpy(frames[np.asarray(which), y:y + h, x:x + w]).permute(0, 3, 1, 2)
    t = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return t.permute(1, 0, 2, 3).contiguous()


# Tolerance of the loader's clips against the reference path, in levels of 0-255: a crop enlarged on
# both sides is resized by OpenCV's uint8 bilinear kernel (shards.decode), each pixel within one level
# of torch's (both round fixed-point weights, differently), those pixels off by under 0.25 on average
# (0.18 measured on the real clips); every other crop goes through the reference's own kernel: equal.
ENLARGED_MAX_ABS, ENLARGED_MEAN_ABS = 1, 0.25


def test_loader_clips_match_the_reference_path(real_ucf_shards):
    """Clips within the stated tolerance of the reference path on the real clips (128x171 frames:
    nearly every crop enlarged, so OpenCV's kernel is what this checks), labels and geometry equal."""
    from shards.index import read_index
    from shards.pairs import INDICES, draw, needed_frames
    from shards.random_access import FrameReader
    from shards.sampling import PairConfig
    from shards.stream import ClipPairStream, StreamConfig

    idx = read_index(real_ucf_shards)
    H, W = int(idx.attrs["height"]), int(idx.attrs["width"])
    batches = list(ClipPairStream(StreamConfig(str(real_ucf_shards), batch_size=2, out_size=(112, 112))))
    reader, keys, rows = FrameReader(str(real_ucf_shards), idx), idx.keys(), {str(v): r for r, v in enumerate(idx.video_id)}
    checked, enlarged, diffs = 0, 0, []
    for b in batches:
        for i, vid in enumerate(b["video_id"]):
            row = rows[vid]
            pair = draw(0, 0, keys[row], int(idx.n_frames[row]), H, W, PairConfig())
            assert [int(b[k][i]) for k in INDICES] == [getattr(pair, k) for k in INDICES] and int(b["label"][i]) == int(idx.label[row])
            needed = needed_frames(pair)
            frames = np.stack([simplejpeg.decode_jpeg(j, colorspace="RGB") for j in reader.read_jpegs(row, needed)])
            for clip, fr, box, idx_key, box_key in (("clip1", pair.idx1, pair.box1, "idx1", "box1"),
                                                    ("clip2", pair.idx2, pair.box2, "idx2", "box2")):
                assert b[idx_key][i].tolist() == fr.tolist() and tuple(b[box_key][i].tolist()) == tuple(box)
                ref = reference_clip(frames, np.searchsorted(needed, fr), box, (112, 112))
                d = (b[clip][i].int() - ref.int()).abs()
                if box[2] <= 112 and box[3] <= 112:
                    enlarged += 1
                    diffs.append(d.flatten())
                    assert int(d.max()) <= ENLARGED_MAX_ABS, (vid, clip, box, int(d.max()))
                else:
                    assert int(d.max()) == 0, (vid, clip, box)
            checked += 1
    assert checked == 10        # every delivered pair (11 videos, batches of 2)
    assert enlarged >= 10, enlarged
    mean = float(torch.cat(diffs).float().mean())
    assert mean <= ENLARGED_MEAN_ABS, mean


@pytest.mark.parametrize("which", [[0, 1, 2, 3], [1, 3, 5, 7], [6, 2, 2, 9], [4]])
def test_views_and_gathers_give_the_same_clip(which):
    """Evenly spaced frames are read as a view, others gathered: the same pixels either way, written
    into the batch slot itself (an enlarged crop: within the stated tolerance, OpenCV's kernel)."""
    rng = np.random.default_rng(len(which))
    frames = rng.integers(0, 255, (10, 60, 80, 3), dtype=np.uint8)
    for size in ((32, 32), (50, 40), (40, 50), (56, 64)):          # down, mixed, as cropped, up
        box = (7, 5, 50, 40)
        out = torch.empty((len(which), *size, 3), dtype=torch.uint8).permute(3, 0, 1, 2)   # a batch slot's layout
        got = clip_from_frames(frames, which, box, 0, size, out)
        d = (got.int() - reference_clip(frames, which, box, size).int()).abs()
        assert got.data_ptr() == out.data_ptr()
        assert int(d.max()) <= (ENLARGED_MAX_ABS if size == (56, 64) else 0), size
