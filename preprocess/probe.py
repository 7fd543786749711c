"""What a video file holds, read from ffmpeg's own banner (no ffprobe: the pip-only ffmpeg has none).

``ffmpeg -i FILE`` with no output prints the container, duration and streams on stderr and exits
non-zero; that banner is stable across ffmpeg releases for the fields read here.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess

from .ffmpeg_binary import ffmpeg_path

# Demuxers for elementary streams: their packets carry no timestamps, so the transcoder must
# generate them from the stream's frame rate before resampling.
RAW_STREAM_FORMATS = frozenset({"m4v", "h264", "hevc", "mpegvideo", "mpeg1video", "mpeg2video", "rawvideo", "vc1", "av1", "obu"})

_INPUT = re.compile(r"^Input #0, ([^,]+(?:,[^,]+)*), from ", re.M)
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
# The frame size follows ", " and ends at a word boundary: a codec tag (mp4v / 0x7634706D) never matches.
_VIDEO = re.compile(r"Stream #0:\d+.*?: Video: (\w+).*?, (\d{1,5})x(\d{1,5})\b")
# Smaller frames are refused with their size: the output size has the same floor (--size).
MIN_SIDE = 16
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")


class ProbeError(RuntimeError):
    """The file cannot be used as a video; the message is the reason recorded in the index."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    fps: float | None          # the stream's frame rate (for elementary streams, its tbr)
    duration: float | None     # seconds; None for elementary streams without a container

    @property
    def is_raw_stream(self) -> bool:
        return self.container.split(",")[0] in RAW_STREAM_FORMATS


def parse_banner(text: str) -> VideoInfo:
    """Parse ffmpeg's ``Input #0`` banner; raise ProbeError with a readable reason."""
    m = _INPUT.search(text)
    if not m:
        last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        raise ProbeError(f"not a readable media file ({last[-1] if last else 'ffmpeg printed nothing'})")
    container = m.group(1).strip()
    video_lines = [ln for ln in text.splitlines() if re.search(r"Stream #0:\d+.*: Video:", ln)]
    # Cover art is a one-frame mjpeg/png 'video' stream flagged attached_pic: not a video.
    video_lines = [ln for ln in video_lines if "attached pic" not in ln]
    if not video_lines:
        raise ProbeError("no video stream (audio-only or data-only file)")
    v = _VIDEO.search(video_lines[0])
    if not v:
        raise ProbeError(f"video stream without a frame size: {video_lines[0].strip()}")
    width, height = int(v.group(2)), int(v.group(3))
    if min(width, height) < MIN_SIDE:
        raise ProbeError(f"frame size {width}x{height} is too small (a side under {MIN_SIDE} px)")
    rates = {unit: float(num) * (1000 if k else 1) for num, k, unit in _RATE.findall(video_lines[0])}
    raw = container.split(",")[0] in RAW_STREAM_FORMATS
    # A raw demuxer's 'fps' is its own default (25), not the stream's; tbr comes from the bitstream.
    fps = (rates.get("tbr") or rates.get("fps")) if raw else (rates.get("fps") or rates.get("tbr"))
    d = _DURATION.search(text)
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else None
    return VideoInfo(container, v.group(1), width, height, fps, duration)


def looks_like_elementary_stream(path: str) -> bool:
    """True for a bare MPEG-4/H.264/MPEG video stream (no container), judged by its first bytes.

    Containers open with a signature (RIFF, ftyp, EBML, FLV, OggS, an MPEG-PS pack header 000001BA);
    elementary streams open with a start code. Only a guess: the transcoder checks it against
    ffmpeg's banner and re-runs if it was wrong.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:3] == b"\x00\x00\x01":
        return head[3] != 0xBA
    return head == b"\x00\x00\x00\x01"


def probe(path: str, timeout: float = 30.0) -> VideoInfo:
    try:
        proc = subprocess.run(
            [ffmpeg_path(), "-nostdin", "-hide_banner", "-i", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"probe timed out after {timeout:g} s") from exc
    return parse_banner(proc.stderr.decode("utf-8", "replace"))
