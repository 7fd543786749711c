"""shards.writer: shard tars (offsets, determinism, checksum, abort), atomic outputs, sidecars."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from shards.errors import InputError
from shards.format import TEMP_MARK, frame_member, meta_member, tar_header_ok
from shards.atomic_files import atomic_path, atomic_write_bytes
from shards.writer import ShardWriter, file_sha256, read_sidecar, tar_listing, write_sidecar
from tests.conftest import VIDEOS


def _real_jpegs(n: int) -> list[bytes]:
    from preprocess.transcode import TranscodeSettings, transcode

    clip = VIDEOS / "ucf101/UCF-101/SoccerJuggling/v_SoccerJuggling_g23_c01.avi"
    return transcode(str(clip), TranscodeSettings(height=32, width=48, fps=5)).frames[:n]


@pytest.fixture(scope="module")
def jpegs():
    return _real_jpegs(7)


def _write(path, jpegs):
    with ShardWriter(path) as w:
        a = w.add_sample("vid_a", {"video_id": "vid a"}, jpegs[:3])
        b = w.add_sample("vid_b", {"video_id": "vid/b"}, jpegs[3:])
        size = w.commit()
    return w, a, b, size


def test_shard_writer_offsets_are_where_tarfile_finds_each_frame(tmp_path, jpegs):
    path = tmp_path / "s-000000.tar"
    w, a, b, size = _write(path, jpegs)
    assert size == path.stat().st_size
    members = {name: (off, n) for name, off, n in tar_listing(path)}
    assert list(members)[0] == meta_member("vid_a") and meta_member("vid_b") in members
    raw = path.read_bytes()
    for key, where, frames in (("vid_a", a, jpegs[:3]), ("vid_b", b, jpegs[3:])):
        for i, (off, n) in enumerate(zip(where["frame_offset"], where["frame_size"])):
            assert members[frame_member(key, i)] == (off, n)
            assert raw[off:off + n] == frames[i]
    with tarfile.open(path) as tf:
        assert json.load(tf.extractfile(meta_member("vid_b"))) == {"video_id": "vid/b"}
        assert all(m.mtime == 0 and m.mode == 0o444 and m.uname == "" for m in tf.getmembers())


def test_shard_writer_writes_the_bytes_tarfile_writes(tmp_path, jpegs):
    long_key = "k" * 120                         # a name over ustar's 100 bytes takes a pax header
    path = tmp_path / "ours.tar"
    with ShardWriter(path) as w:
        w.add_sample("vid_a", {"video_id": "vid a"}, jpegs[:3])
        w.add_sample(long_key, {}, jpegs[3:5])
        w.commit()
    ref = tmp_path / "tarfile.tar"
    with tarfile.open(ref, "w", format=tarfile.PAX_FORMAT) as tf:
        for key, meta, frames in (("vid_a", {"video_id": "vid a"}, jpegs[:3]), (long_key, {}, jpegs[3:5])):
            for name, data in [(meta_member(key), json.dumps(meta, sort_keys=True).encode())] + \
                              [(frame_member(key, i), f) for i, f in enumerate(frames)]:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 0, 0o444, "", ""
                tf.addfile(ti, io.BytesIO(data))
    assert path.read_bytes() == ref.read_bytes()


def test_shard_writer_is_deterministic_and_its_checksum_is_the_files(tmp_path, jpegs):
    w1, *_ = _write(tmp_path / "a.tar", jpegs)
    w2, *_ = _write(tmp_path / "b.tar", jpegs)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert w1.sha256 == w2.sha256 == file_sha256(tmp_path / "a.tar")
    assert not list(tmp_path.glob(f".*{TEMP_MARK}*"))


def test_a_failed_shard_leaves_no_tar_and_no_temporary(tmp_path, jpegs):
    path = tmp_path / "s.tar"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(path) as w:
            w.add_sample("vid_a", {}, jpegs[:2])
            assert w.tmp.exists() and not path.exists()
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


class _FullDisk(io.BufferedWriter):
    """A file whose disk filled: what is still buffered cannot be written, so flush and close fail."""

    def flush(self):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("stage", ["add", "commit"])
def test_a_full_disk_leaves_no_temporary_even_when_closing_fails(tmp_path, jpegs, stage):
    path = tmp_path / "s.tar"
    with pytest.raises(OSError, match="No space left") as info:
        with ShardWriter(path) as w:
            w._file = _FullDisk(io.FileIO(w.tmp, "w"))
            w.add_sample("vid_a", {}, jpegs[:2])
            if stage == "add":
                raise OSError(28, "No space left on device (writing frame 3)")
            w.commit()
    if stage == "add":             # the error that stopped the shard, not the one closing it
        assert "writing frame 3" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_tar_header_checksum(tmp_path, jpegs):
    _write(tmp_path / "s.tar", jpegs)
    raw = (tmp_path / "s.tar").read_bytes()
    header = raw[:512]
    assert tar_header_ok(header)
    assert not tar_header_ok(header[:10] + bytes([header[10] ^ 1]) + header[11:])
    assert not tar_header_ok(header[:148] + b"zzzzzzz\0" + header[156:])


def test_atomic_path_replaces_a_file_or_a_folder_only_on_success(tmp_path):
    f = tmp_path / "out.bin"
    atomic_write_bytes(f, b"one")
    atomic_write_bytes(f, b"two")
    assert f.read_bytes() == b"two"
    with pytest.raises(ValueError):
        with atomic_path(f) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError
    assert f.read_bytes() == b"two"
    d = tmp_path / "group"
    for n in (1, 2):
        with atomic_path(d) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text(str(n))
    assert (d / "x").read_text() == "2"
    with pytest.raises(KeyError):
        with atomic_path(d) as tmp:
            tmp.mkdir()
            raise KeyError
    assert (d / "x").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group", "out.bin"]


def test_a_folder_never_replaces_a_file(tmp_path):
    target = tmp_path / "index.zarr"
    target.write_text("a file")
    with pytest.raises(InputError, match="exists and is not a folder"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
    assert target.read_text() == "a file" and [p.name for p in tmp_path.iterdir()] == ["index.zarr"]


def test_sidecar_round_trip_and_checksum(tmp_path):
    path = tmp_path / "s.json"
    write_sidecar(path, {"shard": 3, "videos": [{"row": 1, "n_frames": 10}]})
    rec = read_sidecar(path)
    assert rec["shard"] == 3 and rec["format_version"] == 1
    text = path.read_text()
    path.write_text(text.replace('"n_frames": 10', '"n_frames": 11'))
    assert read_sidecar(path) is None
    path.write_text("{not json")
    assert read_sidecar(path) is None
    assert read_sidecar(tmp_path / "absent.json") is None
