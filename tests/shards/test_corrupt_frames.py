"""A JPEG whose bytes were overwritten, in a shard of real UCF-101 frames: named, or skipped and counted."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from shards.errors import RunFailed
from shards.index import read_index
from shards.pairs import draw, needed_frames
from shards.sampling import PairConfig
from shards.stream import ClipPairStream, PairLoader, ShardDataError, StreamConfig


@pytest.fixture
def corrupt_set(real_ucf_shards, tmp_path):
    """A copy of the real shards with one frame that epoch 0's pair of one video needs overwritten."""
    bad = tmp_path / "shards"
    shutil.copytree(real_ucf_shards, bad)
    index = read_index(bad)
    row = int(index.select()[3])
    key = index.keys()[row]
    pair = draw(0, 0, key, int(index.n_frames[row]), int(index.attrs["height"]), int(index.attrs["width"]), PairConfig())
    frame = int(needed_frames(pair)[2])
    offs, sizes = index.frames_of(row)
    tar = bad / index.shards[index.shard[row]]
    data = bytearray(tar.read_bytes())
    start = int(offs[frame]) + int(sizes[frame]) // 3
    data[start: start + int(sizes[frame]) // 3] = np.random.default_rng(0).integers(0, 256, int(sizes[frame]) // 3, np.uint8).tobytes()
    tar.write_bytes(bytes(data))
    return bad, tar, key, frame


def stream_cfg(shards, **kw):
    return StreamConfig(str(shards), batch_size=1, out_size=(32, 32), **kw)


def test_a_corrupt_jpeg_names_shard_video_and_frame(corrupt_set):
    shards, tar, key, frame = corrupt_set
    with pytest.raises(ShardDataError, match=rf"shard {tar}: video {key}: frame {frame}: JPEG does not decode"):
        list(ClipPairStream(stream_cfg(shards)))


def test_with_skip_errors_it_is_skipped_counted_and_bounded(corrupt_set):
    shards, tar, key, frame = corrupt_set
    loader = PairLoader(stream_cfg(shards, skip_errors=True, max_skip_fraction=0.5), num_workers=1)
    batches = list(loader)
    assert len(batches) == 11                         # the worker made up its quota with a repeat
    assert loader.epoch_summary() == {"videos_in_split": 11, "videos_delivered": 10, "samples_skipped": 1}
    # the default bound (1%) stops the epoch: one bad sample of 11 is too many
    with pytest.raises(ShardDataError, match=rf"1 of its 11 samples skipped, more than data.max_skip_fraction 0.01; "
                                             rf"first: shard {tar}: video {key}: frame {frame}") as err:
        list(PairLoader(stream_cfg(shards, skip_errors=True), num_workers=1))
    assert isinstance(err.value, RunFailed) and err.value.exit_code == 1
