"""Locate the ffmpeg executable: the one on PATH, else the static build the imageio-ffmpeg wheel ships.

A user who only ran ``pip install`` has no system ffmpeg, and that wheel carries no ffprobe, so
nothing in this stage may depend on ffprobe being present (see ``preprocess.probe``).
"""
from __future__ import annotations

import functools
import os
import shutil


class FFmpegNotFound(RuntimeError):
    pass


@functools.lru_cache(maxsize=None)
def ffmpeg_path() -> str:
    """Absolute path of the ffmpeg binary to use. ``CSTP_FFMPEG`` overrides the search."""
    override = os.environ.get("CSTP_FFMPEG")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise FFmpegNotFound(f"CSTP_FFMPEG={override!r} is not an executable file")
        return override
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a hard dependency
        raise FFmpegNotFound("no ffmpeg on PATH and imageio-ffmpeg is not installed") from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FFmpegNotFound(f"no ffmpeg on PATH and imageio-ffmpeg has none: {exc}") from exc


@functools.lru_cache(maxsize=None)
def ffprobe_path() -> str | None:
    """ffprobe next to the chosen ffmpeg or on PATH, or None (the imageio-ffmpeg wheel has none)."""
    sibling = os.path.join(os.path.dirname(ffmpeg_path()), "ffprobe")
    if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("ffprobe")
