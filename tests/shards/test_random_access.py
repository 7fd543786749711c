"""shards.random_access: frames by byte offset, locally and over HTTP Range requests."""
from __future__ import annotations

import numpy as np
import pytest

from shards.index import read_index
from shards.random_access import FrameReader, evenly_spaced_clips, runs
from shards.sources import SourceError
from tests.helpers import copied_video_tar
from tests.servers import plain_http_server, range_http_server
from tests.synthetic import flat_index
from tests.shards.test_stream import flat_shards  # noqa: F401  (module-scoped fixture)


def test_runs():
    assert runs([5, 3, 4, 9, 10, 3]) == [(3, 5), (9, 10)]
    assert runs([]) == []


def test_frames_are_the_videos_frames_with_one_read_per_run(flat_shards):  # noqa: F811
    idx = read_index(flat_shards)
    with FrameReader(str(flat_shards), idx) as reader:
        for row in idx.select():
            n = int(idx.n_frames[row])
            want = [n - 1, 0, 1, 2, 10, 11, n // 2, 0]
            got = reader.read_frames(row, want)
            assert got.shape == (len(want), 128, 171, 3)
            assert [flat_index(f) for f in got] == want
        before = reader.reads
        reader.read_jpegs(int(idx.select()[0]), range(16))
        assert reader.reads - before == 1            # a run of 16 frames: one ranged read
        with pytest.raises(IndexError, match="has"):
            reader.read_jpegs(int(idx.select()[0]), [10_000])
        missing = int(np.flatnonzero(idx.status != 0)[0]) if (idx.status != 0).any() else None
        if missing is not None:
            with pytest.raises(KeyError, match="status"):
                reader.read_jpegs(missing, [0])


def test_http_range_reads_match_local(flat_shards):  # noqa: F811
    idx = read_index(flat_shards)
    row = int(idx.select()[3])
    local = FrameReader(str(flat_shards)).read_jpegs(row, [0, 5, 6, 7, 30])
    with range_http_server(flat_shards) as url:
        remote = FrameReader(url, merge_gap=0)
        assert remote.read_jpegs(row, [0, 5, 6, 7, 30]) == local
        assert remote.reads == 3                     # one range per run of consecutive frames
        merged = FrameReader(url)
        assert merged.read_jpegs(row, [0, 5, 6, 7, 30]) == local
        assert merged.reads == 1                     # runs a few small frames apart: one range


def test_runs_close_together_are_one_read_and_far_apart_are_not(flat_shards):  # noqa: F811
    idx = read_index(flat_shards)
    row = int(idx.select()[0])
    offs, sizes = idx.frames_of(row)
    every_4th = list(range(0, 29, 4))                # a clip at playback rate 4
    apart = FrameReader(str(flat_shards), idx, merge_gap=0)
    close = FrameReader(str(flat_shards), idx)
    assert close.read_jpegs(row, every_4th) == apart.read_jpegs(row, every_4th)
    assert (apart.reads, close.reads) == (len(every_4th), 1)
    gap = int(offs[4] - 512 - (offs[0] + (sizes[0] + 511) // 512 * 512))     # bytes between frames 0 and 4
    just_below = FrameReader(str(flat_shards), idx, merge_gap=gap - 1)
    just_below.read_jpegs(row, [0, 4])
    assert just_below.reads == 2


def test_a_server_without_range_support_is_a_clear_error(flat_shards):  # noqa: F811
    with plain_http_server(flat_shards) as url:
        reader = FrameReader(url)
        with pytest.raises(SourceError, match="ignores Range requests"):
            reader.read_jpegs(int(reader.index.select()[0]), [3])


def test_missing_shard_over_http_is_named(flat_shards, tmp_path):  # noqa: F811
    import shutil

    site = tmp_path / "site"
    shutil.copytree(flat_shards, site)
    idx = read_index(site)
    row = int(idx.select()[0])
    (site / idx.shards[idx.shard[row]]).unlink()
    with range_http_server(site) as url:
        with pytest.raises(SourceError, match=r"HTTP 404\): http://127.0.0.1:\d+/ucf101-\d+\.tar"):
            FrameReader(url).read_jpegs(row, [0])


@pytest.mark.parametrize("n", [300, 40, 16, 7])
def test_evenly_spaced_clips(n):
    clips = evenly_spaced_clips(n, n_clips=10, clip_len=16)
    assert clips.shape == (10, 16)
    assert clips.min() >= 0 and clips.max() <= n - 1
    assert np.all(np.diff(clips[:, 0]) >= 0)                 # in order along the video
    if n >= 16:
        assert np.all(np.diff(clips, axis=1) == 1)           # consecutive frames
    if n >= 160:
        centres = clips.mean(axis=1)
        assert np.allclose(centres, (np.arange(10) + 0.5) * n / 10, atol=1.0)
    else:
        assert clips[-1, -1] == n - 1 if n >= 16 else clips[0, -1] == n - 1


def test_a_tar_header_whose_checksum_disagrees_is_a_frame_mismatch(flat_shards, tmp_path):  # noqa: F811
    """Name and size right, one byte of the mtime field changed: the vectorised checksum catches it."""
    from shards.random_access import FrameMismatch, header_sums, stored_checksum

    site = tmp_path / "site"
    idx, row, tar, data = copied_video_tar(flat_shards, site, 2)
    offs, _ = idx.frames_of(row)
    hdr = int(offs[7]) - 512
    assert header_sums(bytes(data), np.array([hdr]))[0] == stored_checksum(bytes(data[hdr:hdr + 512]))
    data[hdr + 140] = ord("7") if data[hdr + 140] != ord("7") else ord("6")      # inside mtime (136..147)
    tar.write_bytes(bytes(data))
    reader = FrameReader(str(site))
    assert len(reader.read_jpegs(row, [5, 6])) == 2
    with pytest.raises(FrameMismatch, match=rf"^shard {tar}: video {idx.video_id[row]}: frame 7: no valid tar header "
                                            rf"at byte {hdr} \(checksum mismatch\)"):
        reader.read_jpegs(row, [6, 7, 8])


def _site_with(flat_shards, tmp_path, damage):  # noqa: F811
    """A copy of the flat shards, ``damage(site, index, row)`` applied to the third video's shard or index."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(flat_shards, site)
    idx = read_index(site)
    row = int(idx.select()[2])
    damage(site, idx, row)
    return site, idx, row


def _garbage(site, idx, row):
    tar = site / idx.shards[idx.shard[row]]
    tar.write_bytes(np.random.default_rng(3).integers(0, 256, tar.stat().st_size, np.uint8).tobytes())


def _negative_offsets(site, idx, row):
    import zarr

    g = zarr.open_group(str(site / "index.zarr"), mode="r+")
    offs = g["frame_offset"][:]
    a = int(idx.frame_ptr[row])
    offs[a:a + int(idx.n_frames[row])] = -4096
    g["frame_offset"][:] = offs


def test_a_shard_overwritten_with_garbage_is_one_line_in_random_access_and_training(flat_shards, tmp_path):  # noqa: F811
    from shards.errors import RunFailed, one_line
    from shards.stream import ClipPairStream, ShardDataError
    from tests.shards.test_stream import cfg

    site, idx, row = _site_with(flat_shards, tmp_path, _garbage)
    tar = site / idx.shards[idx.shard[row]]
    want = rf"^shard {tar}: video {idx.video_id[row]}: frame \d+: no valid tar header at byte \d+ \(checksum mismatch\)"
    with pytest.raises(RunFailed, match=want) as err:
        FrameReader(str(site)).read_frames(row, [0, 1])
    assert err.value.exit_code == 1 and one_line(err.value) == str(err.value) and len(str(err.value)) < 250
    with pytest.raises(ShardDataError, match=want) as err:
        list(ClipPairStream(cfg(site)))
    assert len(str(err.value)) < 250                  # no raw bytes quoted


def test_a_negative_frame_offset_in_the_index_names_shard_and_video(flat_shards, tmp_path):  # noqa: F811
    from shards.errors import RunFailed
    from shards.stream import ClipPairStream, ShardDataError
    from tests.shards.test_stream import cfg

    site, idx, row = _site_with(flat_shards, tmp_path, _negative_offsets)
    tar = site / idx.shards[idx.shard[row]]
    want = rf"^shard {tar}: video {idx.video_id[row]}: frame \d+: the index puts it at byte -4096 .* the index is damaged$"
    with pytest.raises(RunFailed, match=want):
        FrameReader(str(site)).read_frames(row, [3])
    with pytest.raises(ShardDataError, match=want):
        list(ClipPairStream(cfg(site)))
