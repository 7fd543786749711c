"""One video to a list of JPEG frames at a fixed frame rate and H x W, in one ffmpeg process.

ffmpeg decodes, resamples (fps filter), resizes and encodes JPEG itself; the frames come back on a
pipe and ``communicate`` drains stdout and stderr together, so a chatty decoder cannot deadlock us.
"""
from __future__ import annotations

import dataclasses
import os
import stat
import subprocess

import ffmpeg  # ffmpeg-python

from .ffmpeg_binary import ffmpeg_path
from .jpeg_stream import JpegStreamError, split_jpegs
from .probe import ProbeError, VideoInfo, looks_like_elementary_stream, parse_banner


class TranscodeError(RuntimeError):
    """The video cannot be used; the message is the reason recorded in the index."""


class TranscodeInterrupted(RuntimeError):
    """ffmpeg was stopped by a signal from outside: says nothing about the video, so nothing is recorded."""


@dataclasses.dataclass(frozen=True)
class TranscodeSettings:
    fps: float = 25.0
    height: int = 256
    width: int = 341
    jpeg_quality: int = 3          # ffmpeg's -q:v, 2 (best) .. 31
    timeout: float = 600.0         # seconds per video
    threads: int = 1               # ffmpeg threads; one per Dask worker thread keeps cores honest
    # A container that promises this much more than was decoded is reported as truncated.
    min_decoded_fraction: float = 0.8


@dataclasses.dataclass
class Transcoded:
    info: VideoInfo
    frames: list[bytes]


def fit(stream, height: int, width: int):
    """Scale frames to height x width. ffmpeg has already turned each frame as its display matrix
    says (rotation metadata), so iw x ih is the frame as it is meant to be seen. A frame of the
    output's orientation is resized to it, as the authors resize every video to one size (a 16:9
    frame is squeezed 1.33x into 4:3); a frame of the other orientation (a portrait phone clip into
    landscape frames) keeps its aspect: scaled to cover height x width, then centre-cropped, instead
    of being stretched ~2.4x."""
    if width > height:
        h = f"if(gt(ih,iw),ceil({width}*ih/iw),{height})"
        return stream.filter("scale", width, h, flags="bicubic").filter("crop", width, height, exact=1)
    if height > width:
        w = f"if(gt(iw,ih),ceil({height}*iw/ih),{width})"
        return stream.filter("scale", w, height, flags="bicubic").filter("crop", width, height, exact=1)
    return stream.filter("scale", width, height, flags="bicubic")


def build_command(path: str, raw_stream: bool, s: TranscodeSettings) -> list[str]:
    stream = ffmpeg.input(str(path), threads=s.threads).video
    if raw_stream:
        # Elementary streams carry no timestamps; number the frames at the stream's own rate.
        stream = stream.filter("setpts", "N/FRAME_RATE/TB")
    stream = fit(stream.filter("fps", fps=s.fps), s.height, s.width)
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


# ffmpeg catches SIGINT/SIGTERM, says so on stderr and exits 255.
_SIGNALLED = "received signal"


def _run(cmd: list[str], timeout: float) -> tuple[int, bytes, str]:
    # A process group of its own: the terminal's Ctrl-C (sent to the foreground process group)
    # stops the build through its driver, instead of reaching ffmpeg and passing for a bad video.
    # Not a session of its own: with autogroup scheduling a new session is a new CPU group.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            process_group=0)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TranscodeError(f"decode timed out after {timeout:g} s") from None
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    stderr = err.decode("utf-8", "replace")
    if proc.returncode < 0 or (proc.returncode == 255 and _SIGNALLED in stderr):
        raise TranscodeInterrupted(f"ffmpeg was stopped by a signal (exit {proc.returncode}): {_reason(stderr)}")
    return proc.returncode, out, stderr


def check_readable(path: str) -> None:
    """Raise TranscodeError with the OS's reason for a listed path that is not a readable file.

    Done before ffmpeg sees it: a FIFO would block ffmpeg until the timeout, and a dangling link or
    a directory would otherwise surface as a vague demuxer message.
    """
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, os.strerror(21), path)
        if not stat.S_ISREG(st.st_mode):
            raise TranscodeError(f"not a regular file ({_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')})")
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        link = " (dangling symlink)" if isinstance(exc, FileNotFoundError) and os.path.islink(path) else ""
        raise TranscodeError(f"cannot read: {exc.strerror or exc}{link}") from None
    if st.st_size == 0:
        raise TranscodeError("empty file (0 bytes)")


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


def transcode(path: str, s: TranscodeSettings) -> Transcoded:
    """Decode, resample, resize and JPEG-encode one video in a single ffmpeg run.

    The input's properties come from the banner ffmpeg prints in that same run (a separate probe
    process would cost about a tenth of the transcode of a short clip).
    """
    check_readable(path)
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
