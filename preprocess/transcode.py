"""One video to a list of JPEG frames at a fixed frame rate and H x W, in one ffmpeg process.

ffmpeg decodes, resamples (fps filter), resizes and encodes JPEG itself; the frames come back on a
pipe and ``communicate`` drains stdout and stderr together, so a chatty decoder cannot deadlock us.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess

import ffmpeg  # ffmpeg-python

from .ffmpeg_binary import ffmpeg_path
from .jpeg_stream import JpegStreamError, split_jpegs
from .probe import ProbeError, VideoInfo, looks_like_elementary_stream, parse_banner


class TranscodeError(RuntimeError):
    """The video cannot be used; the message is the reason recorded in the index."""


@dataclasses.dataclass(frozen=True)
class TranscodeSettings:
    fps: float = 25.0
    height: int = 128
    width: int = 171
    jpeg_quality: int = 3          # ffmpeg's -q:v, 2 (best) .. 31
    timeout: float = 600.0         # seconds per video
    threads: int = 1               # ffmpeg threads; one per Dask worker thread keeps cores honest
    # A container that promises this much more than was decoded is reported as truncated.
    min_decoded_fraction: float = 0.8


@dataclasses.dataclass
class Transcoded:
    info: VideoInfo
    frames: list[bytes]


def build_command(path: str, raw_stream: bool, s: TranscodeSettings) -> list[str]:
    stream = ffmpeg.input(str(path), threads=s.threads).video
    if raw_stream:
        # Elementary streams carry no timestamps; number the frames at the stream's own rate.
        stream = stream.filter("setpts", "N/FRAME_RATE/TB")
    stream = stream.filter("fps", fps=s.fps).filter("scale", s.width, s.height, flags="bicubic")
    out = ffmpeg.output(
        stream, "pipe:", format="image2pipe", vcodec="mjpeg", pix_fmt="yuvj420p", an=None, sn=None, dn=None,
        **{"q:v": s.jpeg_quality, "threads": s.threads, "filter_threads": 1},
    )
    # Global flags go before the first input: ffmpeg ignores options that trail the output.
    return [ffmpeg_path(), "-nostdin", "-hide_banner", "-nostats", *out.get_args()]


# Demuxer and decoder words for data that ends or breaks mid-stream. A file cut short often still
# decodes its first seconds with exit 0; these lines are what tells it apart from a whole video.
_CORRUPTION = ("Packet corrupt", "corrupt input packet", "corrupt decoded frame", "partial file")


def _corruption(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if any(word in line for word in _CORRUPTION):
            return line.split("] ")[-1].strip()
    return None


def _reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(" ")]
    return lines[-1] if lines else "no message"


def _run(cmd: list[str], timeout: float) -> tuple[int, bytes, str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TranscodeError(f"decode timed out after {timeout:g} s") from None
    return proc.returncode, out, err.decode("utf-8", "replace")


def transcode(path: str, s: TranscodeSettings) -> Transcoded:
    """Decode, resample, resize and JPEG-encode one video in a single ffmpeg run.

    The input's properties come from the banner ffmpeg prints in that same run (a separate probe
    process would cost about a tenth of the transcode of a short clip).
    """
    if os.path.getsize(path) == 0:
        raise TranscodeError("empty file (0 bytes)")
    raw = looks_like_elementary_stream(path)
    code, out, stderr = _run(build_command(path, raw, s), s.timeout)
    try:
        info = parse_banner(stderr)
    except ProbeError as exc:
        raise TranscodeError(str(exc)) from None
    if info.is_raw_stream != raw:
        # The first-bytes guess was wrong: redo with (or without) generated timestamps.
        code, out, stderr = _run(build_command(path, info.is_raw_stream, s), s.timeout)
    if code != 0:
        raise TranscodeError(f"ffmpeg exit {code}: {_reason(stderr)}")
    corrupt = _corruption(stderr)
    if corrupt:
        raise TranscodeError(f"truncated or corrupt input: {corrupt}")
    try:
        frames = split_jpegs(out)
    except JpegStreamError as exc:
        raise TranscodeError(f"ffmpeg produced a malformed JPEG stream: {exc}") from None
    if not frames:
        raise TranscodeError("no decodable frames")
    if info.duration:
        expected = info.duration * s.fps
        if len(frames) < s.min_decoded_fraction * expected - 1:
            raise TranscodeError(
                f"truncated: decoded {len(frames)} frames, the container promises about {expected:.0f}"
            )
    return Transcoded(info, frames)
