"""A small labelled video dataset in UCF-101 layout, for the one-command demo.

Eight classes: {circles, squares} x {moving right, moving down} x {slow, fast}. Colours, positions,
sizes and the background colour are drawn per video, so what tells the classes apart is the shape
and, above all, the motion: what a model learns from motion shows in the retrieval figures.

    python demo/make_dataset.py --out out/demo/data [--per-class 20] [--test-per-class 5] [--frames 80]

Writes <out>/videos/<Class>/v_<Class>_gNN_c01.avi and <out>/lists/{classInd,trainlist0N,testlist0N}.txt
(the test list of each split holds --test-per-class videos per class, the rest are train).

``--content textured`` draws the same classes over a panned and zoomed procedurally generated scene
under a varying light (demo/textured.py): data on which STOR's overlap labels can be read from the
pixels (bench/stor_sanity.py); ``plain`` (the default) is the flat grey background.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:            # run by path: demo/ is no installed package
    sys.path.insert(0, str(ROOT))

from preprocess.adapters.ucf101 import write_lists  # noqa: E402
from preprocess.ffmpeg_binary import ffmpeg_path  # noqa: E402

SHAPES = ("Circle", "Square")
DIRECTIONS = {"Right": (1.0, 0.0), "Down": (0.0, 1.0)}
SPEEDS = {"Slow": 1.0, "Fast": 2.0}      # pixels per frame at 128 x 171
CLASSES = [f"{s}{d}{v}" for s in SHAPES for d in DIRECTIONS for v in SPEEDS]


def render(cls: str, rng: np.random.Generator, n_frames: int, h: int = 128, w: int = 171) -> np.ndarray:
    shape = next(s for s in SHAPES if cls.startswith(s))
    dx, dy = DIRECTIONS[next(d for d in DIRECTIONS if d in cls)]
    speed = SPEEDS[next(v for v in SPEEDS if cls.endswith(v))] * rng.uniform(0.92, 1.08)
    # A plain grey background with a little static grain, lighter objects: the grey levels vary
    # from video to video only as much as the pretraining's colour jitter does, so telling two videos
    # apart by brightness is no shortcut, and a per-video texture (the easiest cue of all) is absent.
    level = rng.uniform(100, 140)
    bg = np.clip(level + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.float32)
    objs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 14), level + rng.uniform(70, 100)) for _ in range(5)]
    # Each object is drawn once around the origin and rolled into place frame by frame: the scene wraps
    # around its edges, and rounding to whole pixels keeps every frame's shapes identical.
    yy, xx = np.mgrid[0:h, 0:w]
    ddy, ddx = np.minimum(yy, h - yy), np.minimum(xx, w - xx)
    sprites = [(ddx ** 2 + ddy ** 2 <= r ** 2) if shape == "Circle" else ((ddx <= r * 0.85) & (ddy <= r * 0.85))
               for _, _, r, _ in objs]
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    for t in range(n_frames):
        img = bg.copy()
        for (x0, y0, _, grey), sprite in zip(objs, sprites):
            img[np.roll(sprite, (round(y0 + dy * speed * t), round(x0 + dx * speed * t)), axis=(0, 1))] = grey
        frames[t] = img.astype(np.uint8)
    return frames


def render_video(cls: str, rng: np.random.Generator, n_frames: int, content: str = "plain") -> np.ndarray:
    if content == "plain":
        return render(cls, rng, n_frames)
    from demo.textured import render_textured     # local: only the textured content needs torch

    shape = next(s for s in SHAPES if cls.startswith(s))
    speed = SPEEDS[next(v for v in SPEEDS if cls.endswith(v))] * rng.uniform(0.92, 1.08)
    return render_textured(shape, DIRECTIONS[next(d for d in DIRECTIONS if d in cls)], speed, rng, n_frames)


def encode(frames: np.ndarray, path: Path, fps: float = 25.0) -> None:
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p", str(path)],
                   input=frames.tobytes(), check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--test-per-class", type=int, default=5, help="test videos per class in each split")
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--content", choices=("plain", "textured"), default="plain",
                   help="background: flat grey (plain) or a panned, zoomed textured scene (textured)")
    args = p.parse_args(argv)
    k = args.test_per_class
    if not 0 < k < args.per_class:
        p.error(f"--test-per-class must be between 1 and --per-class - 1 ({args.per_class - 1}), got {k}")

    out = Path(args.out)
    videos, lists = out / "videos", out / "lists"
    rng = np.random.default_rng(args.seed)
    names = {c: [f"v_{c}_g{j + 1:02d}_c01" for j in range(args.per_class)] for c in CLASSES}
    for c in CLASSES:
        for name in names[c]:
            encode(render_video(c, rng, args.frames, args.content), videos / c / f"{name}.avi")
    write_lists(lists, CLASSES, [(c, name, [2 if (j + k * (s - 1)) % args.per_class < k else 1 for s in (1, 2, 3)])
                                 for c in CLASSES for j, name in enumerate(names[c])])
    print(f"{len(CLASSES) * args.per_class} videos of {args.frames} frames in {len(CLASSES)} classes -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
