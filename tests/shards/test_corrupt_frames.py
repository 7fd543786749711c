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
from tests.helpers import copied_video_tar


@pytest.fixture
def corrupt_set(real_ucf_shards, tmp_path):
    """A copy of the real shards with one frame that epoch 0's pair of one video needs overwritten."""
    bad = tmp_path / "shards"
    _, tar, key, frame = damaged_copy(real_ucf_shards, bad, 3, 2, scribble)
    return bad, tar, key, frame


def scribble(jpeg: bytes) -> bytes:
    """``jpeg`` with its middle third overwritten by seeded random bytes (same length)."""
    third = len(jpeg) // 3
    return jpeg[:third] + np.random.default_rng(0).integers(0, 256, third, np.uint8).tobytes() + jpeg[2 * third:]


def damaged_copy(src, dst, nth_video: int, nth_needed: int, damage):
    """A copy of the shard set ``src`` at ``dst`` in which ``damage`` (JPEG bytes -> as many bytes)
    replaced one frame of its ``nth_video``-th video: the ``nth_needed``-th of the frames its clip pair
    of epoch 0 needs (seed 0, the default pair settings: what the loader draws). (row, tar, key, frame)."""
    index, row, tar, data = copied_video_tar(src, dst, nth_video)
    key = index.keys()[row]
    pair = draw(0, 0, key, int(index.n_frames[row]), int(index.attrs["height"]), int(index.attrs["width"]), PairConfig())
    frame = int(needed_frames(pair)[nth_needed])
    offs, sizes = index.frames_of(row)
    o, s = int(offs[frame]), int(sizes[frame])
    data[o:o + s] = damage(bytes(data[o:o + s]))
    tar.write_bytes(bytes(data))
    return row, tar, key, frame


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


def test_a_corrupt_jpeg_in_random_access_and_eval_names_shard_video_and_frame(corrupt_set):
    """Retrieval's path: not 'frame 0' (a position in a batch) but the frame number within its video."""
    from shards.decode import CorruptFrameError
    from shards.random_access import FrameReader

    shards, tar, key, frame = corrupt_set
    index = read_index(shards)
    row = index.keys().index(key)
    with pytest.raises(CorruptFrameError, match=rf"^shard {tar}: video {index.video_id[row]}: frame {frame}: "
                                                 rf"JPEG does not decode") as err:
        FrameReader(str(shards)).read_frames(row, [frame - 1, frame, 0])
    assert err.value.exit_code == 1


# -- a decompression bomb: a frame whose JPEG header claims 60000 x 60000 pixels --------------------
def bomb(jpeg: bytes, side: int = 60000) -> bytes:
    """``jpeg`` with its frame header (SOF0) saying side x side: same length, so the tar and the index
    still agree with it; only a decoder that trusts the header allocates side^2 x 3 bytes."""
    at = jpeg.index(b"\xff\xc0") + 5                  # marker, length (2), precision (1), then height, width
    return jpeg[:at] + side.to_bytes(2, "big") * 2 + jpeg[at + 4:]


@pytest.fixture
def bomb_set(real_ucf_shards, tmp_path):
    """A copy of the real shards where a frame epoch 0's pair of one video needs is a bomb."""
    bad = tmp_path / "shards"
    row, tar, key, frame = damaged_copy(real_ucf_shards, bad, 5, 4, bomb)
    return bad, tar, row, key, frame


BOMB = r"JPEG header says 60000x60000 pixels, the index says 128x171"


def test_a_bomb_is_a_corrupt_frame_for_the_loader(bomb_set):
    shards, tar, row, key, frame = bomb_set
    for decode in ("cpu", "gpu"):                     # gpu: the workers check the headers they send
        with pytest.raises(ShardDataError, match=rf"^shard {tar}: video {key}: frame {frame}: {BOMB}$"):
            list(ClipPairStream(stream_cfg(shards, decode=decode)))


def test_a_bomb_is_a_corrupt_frame_for_random_access_and_eval(bomb_set):
    from eval.features import clips_at
    from shards.decode import CorruptFrameError
    from shards.random_access import FrameReader

    shards, tar, row, key, frame = bomb_set
    reader = FrameReader(str(shards))
    with pytest.raises(CorruptFrameError, match=rf"^shard {tar}: video {index_id(shards, row)}: frame {frame}: {BOMB}$") as err:
        reader.read_frames(row, [0, frame, 1])
    assert err.value.exit_code == 1
    with pytest.raises(CorruptFrameError, match=rf"frame {frame}: {BOMB}"):
        clips_at(reader, row, np.arange(frame - 3, frame + 5)[None], 112)


def index_id(shards, row) -> str:
    return str(read_index(shards).video_id[row])


def test_verify_names_a_bomb_in_one_line_without_decoding_it(bomb_set):
    import time
    import tracemalloc

    from shards.verify import verify

    shards, tar, row, key, frame = bomb_set
    tracemalloc.start()
    t0 = time.perf_counter()
    problems, _ = verify(shards, progress=False)
    took = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert problems == [f"{tar.name}: video {index_id(shards, row)}: frame {frame}: {BOMB} ({key}.{frame:05d}.jpg)"]
    assert peak < 64e6, f"verify's peak {peak / 1e6:.0f} MB of Python/numpy allocations (one frame is 66 kB)"
    assert took < 60


def test_verify_decodes_strictly_a_frame_whose_tail_is_lost(real_ucf_shards, tmp_path):
    """The last third of a frame zeroed (same length): libjpeg only warns ("premature end") and a
    lenient decode gives grey rows; verify, like the loader, names it."""
    from shards.verify import verify

    bad = tmp_path / "shards"
    index, row, tar, data = copied_video_tar(real_ucf_shards, bad, 1)
    offs, sizes = index.frames_of(row)
    o, s = int(offs[9]), int(sizes[9])
    data[o + 2 * s // 3: o + s] = bytes(s - 2 * s // 3)
    tar.write_bytes(bytes(data))
    problems, _ = verify(bad, progress=False)
    assert problems == [f"{tar.name}: video {index.video_id[row]}: frame 9: JPEG does not decode (Premature end of "
                        f"JPEG file) ({index.keys()[row]}.00009.jpg)"]


# -- forty frames corrupted four ways: what verify's full check names ---------------------------------
def _entropy(jpeg: bytes) -> tuple[int, int]:
    """[start, end) of the entropy-coded data: after the SOS segment, before EOI."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big"), len(jpeg) - 2


def _corrupt(jpeg: bytes, kind: str, rng) -> bytes:
    """``jpeg`` damaged in place (same length, so the tar and the index still agree with it)."""
    j, n = bytearray(jpeg), len(jpeg)
    if kind == "truncate":            # cut at 60%, the rest of the member zero padding
        j[n * 6 // 10:] = bytes(n - n * 6 // 10)
    elif kind == "zero_tail":         # a lost last eighth
        j[n * 7 // 8:] = bytes(n - n * 7 // 8)
    elif kind == "flip":              # 8 bytes of the Huffman-coded data inverted
        a, b = _entropy(jpeg)
        for p in rng.choice(np.arange(a, b), 8, replace=False):
            j[p] ^= 0xFF
    elif kind == "header":            # the frame header's SOF0 marker gone
        at = jpeg.index(b"\xff\xc0")
        j[at:at + 2] = b"\x00\x00"
    return bytes(j)


def _damage(shards, where: dict) -> None:
    """Apply {(row, frame): new JPEG bytes} to the tars."""
    index = read_index(shards)
    for (row, frame), data in where.items():
        offs, sizes = index.frames_of(row)
        tar = shards / index.shards[index.shard[row]]
        with open(tar, "r+b") as f:
            f.seek(int(offs[frame]))
            assert len(data) == int(sizes[frame])
            f.write(data)


def _jpeg(shards, row: int, frame: int) -> bytes:
    index = read_index(shards)
    offs, sizes = index.frames_of(row)
    with open(shards / index.shards[index.shard[row]], "rb") as f:
        f.seek(int(offs[frame]))
        return f.read(int(sizes[frame]))


def test_verify_names_every_frame_a_strict_decode_detects_and_fails_every_damaged_shard(real_ucf_shards, tmp_path):
    """40 frames, 10 each of four kinds, spread over the 11 shards. A truncated frame, a lost tail or a
    broken header always fails a strict decode; inverted bytes in the entropy-coded data usually do
    (a bad Huffman code, a marker where none may be) but not always: JPEG carries no checksum, and a
    change that keeps the Huffman stream decodable gives wrong pixels silently. Verify names every
    frame the decoder detects; a shard whose damage it cannot see fails on its sha256."""
    from shards.verify import FrameCheck, verify

    bad = tmp_path / "shards"
    shutil.copytree(real_ucf_shards, bad)
    index = read_index(bad)
    rows = [int(r) for r in index.select()]
    rng = np.random.default_rng(0)
    kinds = ["truncate", "zero_tail", "flip", "header"]
    where = {}
    for i in range(40):
        row, frame = rows[i % len(rows)], 3 + 7 * (i // len(rows))
        where[(row, frame)] = (kinds[i % 4], _corrupt(_jpeg(bad, row, frame), kinds[i % 4], rng))
    _damage(bad, {k: v[1] for k, v in where.items()})
    check = FrameCheck(int(index.attrs["height"]), int(index.attrs["width"]))
    detectable = {k for k, (_, data) in where.items() if check(data) is not None}
    assert {k for k, (kind, _) in where.items() if kind != "flip"} <= detectable          # 30 always

    problems, _ = verify(bad, progress=False)
    named = set()
    for p in problems:
        if ": frame " in p:
            _, video, frame = p.split(": ")[:3]
            named.add((index.video_id.tolist().index(video.split(" ", 1)[1]), int(frame.split(" ")[1])))
    assert named == detectable, f"missed {sorted(detectable - named)}, extra {sorted(named - detectable)}"
    failed = {p.split(":")[0] for p in problems}
    assert failed == {index.shards[index.shard[r]] for r, _ in where}               # every damaged shard


def test_verify_fails_a_shard_whose_only_damage_decodes_cleanly(real_ucf_shards, tmp_path):
    """One byte of a frame's entropy-coded data changed so that a strict decode still succeeds (with
    other pixels): no decoder can name the frame; the tar's sha256 against its sidecar fails the shard."""
    import simplejpeg

    from shards.verify import verify

    bad = tmp_path / "shards"
    shutil.copytree(real_ucf_shards, bad)
    index = read_index(bad)
    row = int(index.select()[4])
    jpeg = _jpeg(bad, row, 10)
    clean = simplejpeg.decode_jpeg(jpeg, strict=True)
    a, b = _entropy(jpeg)
    for p in range(a + 40, b):                  # the first change of one byte that still decodes strictly
        if jpeg[p] in (0x00, 0xFF) or jpeg[p - 1] == 0xFF:
            continue
        j = bytearray(jpeg)
        j[p] ^= 0x01
        try:
            pixels = simplejpeg.decode_jpeg(bytes(j), strict=True)
        except ValueError:
            continue
        if not np.array_equal(pixels, clean):
            break
    else:
        pytest.fail("no one-byte change of this frame decodes cleanly")
    _damage(bad, {(row, 10): bytes(j)})
    tar = index.shards[index.shard[row]]
    problems, _ = verify(bad, progress=False)
    assert problems == [f"{tar}: every member checks out, but the tar's sha256 is not the one its sidecar recorded at "
                        f"build time: bytes changed since (a change in a frame's entropy-coded data can decode cleanly); "
                        f"rebuild it"]
    assert verify(bad, decode=False, progress=False)[0] == []      # --quick reads headers only
