"""Our shards read by plain clients: a stock webdataset pipeline, and zarr v3's own open_group."""
from __future__ import annotations

import json

import numpy as np
import simplejpeg
import webdataset as wds
import zarr

from shards.format import STATUS_OK
from shards.index import VIDEO_ARRAYS, read_attrs, read_index


def test_a_plain_webdataset_pipeline_reads_every_sample_with_its_json_and_frames(real_ucf_shards):
    idx = read_index(real_ucf_shards)
    urls = [str(real_ucf_shards / t) for t in idx.shards]
    keys = idx.keys()
    want = {keys[r]: r for r in idx.select()}
    seen = set()
    for sample in wds.WebDataset(urls, shardshuffle=False):
        key = sample["__key__"]
        r = want[key]
        meta = json.loads(sample["json"])
        assert meta["video_id"] == str(idx.video_id[r]) and meta["label"] == int(idx.label[r])
        assert meta["n_frames"] == int(idx.n_frames[r]) and meta["class"] == idx.classes[meta["label"]]
        frames = sorted(k for k in sample if k.endswith(".jpg"))
        # "<key>.00000.jpg": webdataset splits at the first dot, so a frame's extension is "00000.jpg"
        assert frames == [f"{i:05d}.jpg" for i in range(meta["n_frames"])]
        offs, sizes = idx.frames_of(r)
        with open(real_ucf_shards / idx.shards[idx.shard[r]], "rb") as f:
            for i in (0, len(frames) - 1):
                f.seek(int(offs[i]))
                assert f.read(int(sizes[i])) == sample[frames[i]]
        img = simplejpeg.decode_jpeg(sample[frames[-1]])
        assert img.shape == (meta["height"], meta["width"], 3)
        seen.add(key)
    assert seen == set(want) and len(seen) == 11


def test_a_plain_zarr_client_reads_the_index_arrays_and_attributes(real_ucf_shards):
    g = zarr.open_group(str(real_ucf_shards / "index.zarr"), mode="r", zarr_format=3)
    attrs = dict(g.attrs)
    assert attrs == read_attrs(real_ucf_shards)
    assert attrs["format_version"] == 1 and attrs["dataset"] == "ucf101" and len(attrs["classes"]) == 101
    assert {"height", "width", "fps", "splits", "shards", "settings"} <= set(attrs)
    assert set(g.array_keys()) == {*VIDEO_ARRAYS, "frame_ptr", "frame_offset", "frame_size"}
    idx = read_index(real_ucf_shards)
    for name in (*VIDEO_ARRAYS, "frame_ptr", "frame_offset", "frame_size"):
        np.testing.assert_array_equal(np.asarray(g[name][:]), getattr(idx, name), err_msg=name)
    status, n_frames, ptr = g["status"][:], g["n_frames"][:], g["frame_ptr"][:]
    assert (status == STATUS_OK).sum() == 11 and g["split"].shape == (13320, 3)
    assert np.array_equal(np.diff(ptr), n_frames) and ptr[-1] == g["frame_offset"].shape[0]
    assert str(g["video_id"][int(np.flatnonzero(status == STATUS_OK)[0])]).startswith("v_")
