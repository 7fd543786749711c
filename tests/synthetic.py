"""Synthetic videos whose frames encode their own index, so a test can tell which frames landed.

Frame i shows i in binary as BITS black/white columns across the top half (wide enough to survive
MPEG-4, JPEG and resizing), and a class-dependent colour below.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from preprocess.ffmpeg_binary import ffmpeg_path

BITS = 10


def index_frame(i: int, height: int, width: int, colour=(40, 120, 200)) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = colour
    cols = np.linspace(0, width, BITS + 1).astype(int)
    for b in range(BITS):
        img[: height // 2, cols[b]:cols[b + 1]] = 255 if (i >> (BITS - 1 - b)) & 1 else 0
    return img


def read_index(rgb: np.ndarray) -> int:
    """Decode the frame number from a (possibly resized) frame."""
    h, w = rgb.shape[:2]
    cols = np.linspace(0, w, BITS + 1)
    value = 0
    for b in range(BITS):
        lo, hi = int(cols[b] + (cols[b + 1] - cols[b]) * 0.3), int(cols[b] + (cols[b + 1] - cols[b]) * 0.7)
        patch = rgb[h // 8: h * 3 // 8, lo:hi]
        value = (value << 1) | int(patch.mean() > 127)
    return value


def make_video(path: Path, n_frames: int, fps: float = 25.0, size=(240, 320), colour=(40, 120, 200),
               codec: str = "mpeg4") -> Path:
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack([index_frame(i, h, w, colour) for i in range(n_frames)])
    cmd = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "pipe:", "-c:v", codec, "-q:v", "2", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path


def make_audio_only(path: Path) -> Path:
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", str(path)], check=True)
    return path


def write_ucf_layout(root: Path, classes: dict[str, list[tuple[str, int]]], test_every: int = 3) -> tuple[Path, Path]:
    """A dataset in UCF-101 layout: videos/<Class>/<name>.avi and lists/{classInd,train,test}lists.

    ``classes`` maps class name to [(video name, n_frames)]; every ``test_every``-th video of a class is
    in the test list of split 1 (splits 2 and 3 shift it by one and two).
    """
    from preprocess.adapters.ucf101 import write_lists

    videos, lists = root / "videos", root / "lists"
    entries = [(c, name, [2 if (j + s - 1) % test_every == 0 else 1 for s in (1, 2, 3)])
               for c in classes for j, (name, _) in enumerate(classes[c])]
    write_lists(lists, list(classes), entries)
    return videos, lists


def flat_colour(i: int) -> tuple[int, int, int]:
    """Frame i of a 'flat' video: one colour over the whole frame, so any crop still shows i."""
    return (16 + 16 * (i % 14), 16 + 16 * (i // 14 % 14), 128)


def flat_index(rgb: np.ndarray) -> int:
    """Frame number from any crop, resize or rotation of a flat frame (up to 196 frames)."""
    r, g = rgb[..., 0].mean(), rgb[..., 1].mean()
    return int(round((r - 16) / 16)) + 14 * int(round((g - 16) / 16))


def make_flat_video(path: Path, n_frames: int, fps: float = 25.0, size=(128, 171)) -> Path:
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    for i in range(n_frames):
        frames[i] = flat_colour(i)
    cmd = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path


def make_square_video(path: Path, size=(320, 180), side: int = 60, rotation: int | None = None,
                      n_frames: int = 5) -> Path:
    """Black frames (height x width = ``size``) with a white side x side square in the middle; with
    ``rotation`` the file carries a display matrix turning it by that many degrees, as phones write."""
    h, w = size
    frame = np.zeros((h, w, 3), np.uint8)
    frame[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2] = 255
    plain = path.with_name(path.stem + "-plain.mp4") if rotation is not None else path
    make_frames_video(plain, np.repeat(frame[None], n_frames, 0))
    if rotation is not None:
        subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-display_rotation", str(rotation), "-i", str(plain),
                        "-c", "copy", str(path)], check=True)
    return path


def make_frames_video(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path
