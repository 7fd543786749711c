"""preprocess: JPEG stream splitting, probing without ffprobe, transcoding, bad inputs."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import simplejpeg

from preprocess.jpeg_stream import JpegStreamError, split_jpegs
from preprocess.probe import ProbeError, parse_banner, probe
from preprocess.transcode import TranscodeError, TranscodeInterrupted, TranscodeSettings, transcode
from tests.conftest import BAD, VIDEOS
from tests.synthetic import make_video, read_index


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return simplejpeg.encode_jpeg(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8), quality=90)


def test_split_jpegs_recovers_each_frame():
    frames = [_jpeg(i) for i in range(5)]
    assert split_jpegs(b"".join(frames)) == frames


def test_split_jpegs_is_not_fooled_by_eoi_bytes_inside_a_segment():
    jpg = _jpeg(0)
    # A COM segment whose payload holds FFD9 right after SOI: a naive search would cut here.
    payload = b"xx\xff\xd9yy"
    com = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    tricky = jpg[:2] + com + jpg[2:]
    assert split_jpegs(tricky + jpg) == [tricky, jpg]
    assert simplejpeg.decode_jpeg(tricky).shape == (32, 48, 3)


def test_split_jpegs_rejects_a_cut_stream():
    jpg = _jpeg(1)
    with pytest.raises(JpegStreamError, match="truncated"):
        split_jpegs(jpg + jpg[: len(jpg) // 2])
    with pytest.raises(JpegStreamError, match="no JPEG start"):
        split_jpegs(b"garbage")


def test_ffmpeg_is_found_without_a_system_install(monkeypatch):
    # A pip-only user has no ffmpeg on PATH; the imageio-ffmpeg wheel's binary must be used.
    import preprocess.ffmpeg_binary as fb

    fb.ffmpeg_path.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CSTP_FFMPEG", raising=False)
    try:
        path = fb.ffmpeg_path()
        assert "imageio_ffmpeg" in path
        out = subprocess.run([path, "-version"], capture_output=True, text=True, check=True).stdout
        assert out.startswith("ffmpeg version")
    finally:
        fb.ffmpeg_path.cache_clear()


def test_probe_reads_real_containers_and_elementary_streams():
    avi = probe(str(VIDEOS / "ucf101/UCF-101/SoccerJuggling/v_SoccerJuggling_g23_c01.avi"))
    assert (avi.width, avi.height, avi.container) == (320, 240, "avi")
    assert avi.fps == pytest.approx(29.97) and avi.duration == pytest.approx(8.01, abs=0.01)
    m4v = probe(str(VIDEOS / "ucf101/UCF-101/Basketball/v_Basketball_g01_c02.mp4"))
    # A raw MPEG-4 stream: no duration, and its rate is the bitstream's 29.97, not the demuxer's 25.
    assert m4v.is_raw_stream and m4v.duration is None and m4v.fps == pytest.approx(29.97)
    k = probe(str(VIDEOS / "kinetics400/val/R6llTwEh07w_000000_000010.mp4"))
    assert k.codec == "h264" and (k.width, k.height) == (340, 256)


def test_parse_banner_reasons():
    with pytest.raises(ProbeError, match="no video stream"):
        parse_banner("Input #0, mp3, from 'a.mp3':\n  Duration: 00:00:01.00\n  Stream #0:0: Audio: mp3, 44100 Hz\n")
    with pytest.raises(ProbeError, match="not a readable media file"):
        parse_banner("a.avi: Invalid data found when processing input\n")


@pytest.mark.parametrize("out_fps,step", [(25.0, 1), (12.5, 2)])
def test_transcode_keeps_frame_order_and_resamples(tmp_path, out_fps, step):
    src = make_video(tmp_path / "v.avi", 50, fps=25)
    r = transcode(str(src), TranscodeSettings(fps=out_fps, height=64, width=96))
    decoded = [simplejpeg.decode_jpeg(f) for f in r.frames]
    assert all(d.shape == (64, 96, 3) for d in decoded)
    assert [read_index(d) for d in decoded] == list(range(0, 50, step))


def test_transcode_times_elementary_streams_by_their_own_rate():
    # 180 frames at 29.97 fps = 6.006 s -> 150 frames at 25 fps (the demuxer's default 25 would give 180).
    r = transcode(str(VIDEOS / "ucf101/UCF-101/Basketball/v_Basketball_g01_c02.mp4"), TranscodeSettings())
    assert len(r.frames) == 150


def test_transcode_real_clips_of_every_dataset():
    for path in sorted(VIDEOS.rglob("*.*"))[::4]:
        r = transcode(str(path), TranscodeSettings(height=128, width=171))
        assert len(r.frames) > 30
        assert simplejpeg.decode_jpeg(r.frames[-1]).shape == (128, 171, 3)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_get_a_clear_reason(synthetic_ucf, name):
    videos, _ = synthetic_ucf
    path = next((videos / "Gamma").glob(name + ".*"))
    with pytest.raises(TranscodeError, match=BAD[name]):
        transcode(str(path), TranscodeSettings())


def test_decode_timeout_is_reported(tmp_path):
    src = make_video(tmp_path / "v.avi", 400, fps=25, size=(480, 640))
    with pytest.raises(TranscodeError, match="timed out"):
        transcode(str(src), TranscodeSettings(timeout=0.01))



@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_a_signal_that_stops_ffmpeg_is_an_interruption_not_a_bad_video(tmp_path, monkeypatch, sig):
    import preprocess.ffmpeg_binary as fb

    real = fb.ffmpeg_path()
    wrapper = tmp_path / "ffmpeg"
    # ffmpeg reading at the clip's own pace (-re: 4 s for 100 frames), stopped half a second in as
    # a supervisor, the OOM killer or a stray `kill` would stop it.
    wrapper.write_text(f'#!/bin/sh\n(sleep 0.5; kill -{sig} $$) &\nexec "{real}" -re "$@"\n')
    wrapper.chmod(0o755)
    src = make_video(tmp_path / "v.avi", 100, fps=25, size=(64, 80))
    fb.ffmpeg_path.cache_clear()
    monkeypatch.setenv("CSTP_FFMPEG", str(wrapper))
    try:
        with pytest.raises(TranscodeInterrupted, match="stopped by a signal"):
            transcode(str(src), TranscodeSettings(threads=1))
    finally:
        fb.ffmpeg_path.cache_clear()
