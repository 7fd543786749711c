"""Resize kernels for the loader's clips, on the real clips in ../shared/data: CPU per clip pair against
decoding the pair's frames, and each kernel's pixels against torch's uint8 antialiased bilinear
kernel (what F.interpolate runs; the loader's for every crop until it took OpenCV's for enlarged ones).

UCF-101's eleven clips are built into shards (``--size``, as bench/loader.py builds them), each
video's pair drawn as the loader draws it, for ``--epochs`` epochs. Per pair the needed frames are
decoded (simplejpeg) into one reused buffer, as a loader worker does, and each kernel resizes both
clips' crops to 112x112, one thread. The kernels take turns within a round, in an order rotated
every round (the first after the decoding runs slower); the least CPU of
``--rounds`` rounds is kept (other load on a shared machine only adds time). Printed per kernel: ms
per pair, x the decoding, and the ceiling decode / (decode + resize) that bench/loader.py's "loader /
limit" cannot pass with that kernel whatever else a worker does; and its pixels against torch's, max
and mean absolute difference, for each kind of crop (both sides enlarged, both shrunk, mixed).
"loader (shards.decode)" is the loader's own choice per crop (OpenCV when enlarged, else torch).

OpenCV's ``cv2.resize`` (opencv-python-headless), uint8, one thread: INTER_LINEAR (no antialiasing
when shrinking), and INTER_AREA when both sides shrink, else INTER_LINEAR (its usual rule).

    python bench/resize.py [--size 128x171] [--epochs 4] [--rounds 5] [--shards DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):        # run by path: import this checkout's packages, not bench/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.loader import build  # noqa: E402

OUT = (112, 112)
REFERENCE = "torch antialiased"     # torch's uint8 kernel on every crop: the pixels the others are compared with


def kernels() -> dict:
    """name -> resize(frames, which, box, slot): slot is a batch slot's [T, 112, 112, 3] uint8 array."""
    import torch
    from PIL import Image

    from shards.decode import _resize, as_slice, clip_from_array

    def torch_aa(frames, which, box, slot):
        x, y, w, h = box
        _resize(torch.from_numpy(frames[as_slice(which), y:y + h, x:x + w]).permute(3, 0, 1, 2), OUT,
                torch.from_numpy(slot[:len(which)]).permute(3, 0, 1, 2))

    def loader(frames, which, box, slot):
        clip_from_array(frames, which, box, 0, OUT, torch.from_numpy(slot[:len(which)]).permute(3, 0, 1, 2))

    def pillow(frames, which, box, slot):      # BILINEAR with reducing: the same filter as torch's
        x, y, w, h = box
        for t, i in enumerate(which.tolist()):
            slot[t] = np.asarray(Image.fromarray(frames[i, y:y + h, x:x + w]).resize(OUT[::-1], Image.BILINEAR))

    out = {REFERENCE: torch_aa, "loader (shards.decode)": loader, "pillow bilinear": pillow}
    import cv2

    cv2.setNumThreads(1)

    def opencv(rule):
        def resize(frames, which, box, slot):
            x, y, w, h = box
            interp = rule(w, h)
            for t, i in enumerate(which.tolist()):
                cv2.resize(frames[i, y:y + h, x:x + w], OUT[::-1], dst=slot[t], interpolation=interp)
        return resize

    shrinks = lambda w, h: w >= OUT[1] and h >= OUT[0]      # noqa: E731
    out[f"opencv {cv2.__version__} linear"] = opencv(lambda w, h: cv2.INTER_LINEAR)
    out[f"opencv {cv2.__version__} area/linear"] = opencv(lambda w, h: cv2.INTER_AREA if shrinks(w, h) else cv2.INTER_LINEAR)
    return out


def pairs(shards: str, epochs: int) -> list:
    """(JPEGs of the needed frames, [(positions, box) of clip 1, of clip 2]) for each drawn pair."""
    from shards.index import read_index
    from shards.pairs import draw, needed_frames
    from shards.random_access import FrameReader
    from shards.sampling import PairConfig

    idx = read_index(shards)
    H, W = int(idx.attrs["height"]), int(idx.attrs["width"])
    reader, keys, out = FrameReader(shards, idx), idx.keys(), []
    for e in range(epochs):
        for row in idx.select():
            p = draw(0, e, keys[row], int(idx.n_frames[row]), H, W, PairConfig())
            needed = needed_frames(p)
            out.append((reader.read_jpegs(row, needed),
                        [(np.searchsorted(needed, p.idx1), p.box1), (np.searchsorted(needed, p.idx2), p.box2)]))
    return out


def kind(box) -> str:
    _, _, w, h = box
    return "enlarged" if w <= OUT[1] and h <= OUT[0] else "shrunk" if w >= OUT[1] and h >= OUT[0] else "mixed"


def measure(work: list, height: int, width: int, rounds: int) -> dict:
    import simplejpeg
    import torch

    torch.set_num_threads(1)
    ks = kernels()
    buf = np.empty((2 * 16, height, width, 3), np.uint8)
    slot, ref = np.empty((16, *OUT, 3), np.uint8), np.empty((16, *OUT, 3), np.uint8)
    best = {k: float("inf") for k in ["decode", *ks]}
    diff: dict = {k: {} for k in ks}
    for r in range(rounds):
        spent = dict.fromkeys(best, 0.0)
        for jpegs, clips in work:
            t = time.thread_time()
            for i, j in enumerate(jpegs):
                simplejpeg.decode_jpeg(j, colorspace="RGB", buffer=buf[i])
            spent["decode"] += time.thread_time() - t
            names = list(ks)
            for name in names[r % len(names):] + names[:r % len(names)]:     # each kernel first after the decoding in turn
                resize = ks[name]
                t = time.thread_time()
                for which, box in clips:
                    resize(buf, which, box, slot)
                spent[name] += time.thread_time() - t
                if r == 0:       # pixels: each clip again, against the loader's
                    for which, box in clips:
                        ks[REFERENCE](buf, which, box, ref)
                        resize(buf, which, box, slot)
                        d = np.abs(slot[:len(which)].astype(np.int16) - ref[:len(which)])
                        m = diff[name].setdefault(kind(box), [0, 0.0, 0, 0])
                        m[0], m[1], m[2], m[3] = max(m[0], int(d.max())), m[1] + float(d.sum()), m[2] + d.size, m[3] + 1
        best = {k: min(best[k], spent[k]) for k in best}
    n, dec = len(work), best["decode"]
    return {"pairs": n, "decode_ms_per_pair": 1e3 * dec / n,
            "kernels": {k: {"ms_per_pair": 1e3 * best[k] / n, "x_decode": best[k] / dec, "ceiling": dec / (dec + best[k]),
                            "pixels": {c: {"clips": m[3], "max_abs": m[0], "mean_abs": m[1] / m[2]} for c, m in diff[k].items()}}
                        for k in ks}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="128x171", help="stored frame size of the shards built for the run")
    p.add_argument("--epochs", type=int, default=4, help="pairs drawn per video")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the least CPU of each kernel's is kept")
    p.add_argument("--shards", help="an existing shard set of the eleven clips (else built into a temporary folder)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards or str(Path(tmp) / "shards")
        if not args.shards:
            build(Path(shards), args.size)
        from shards.index import read_index
        attrs = read_index(shards).attrs
        height, width = int(attrs["height"]), int(attrs["width"])
        fig = {"size": f"{height}x{width}", **measure(pairs(shards, args.epochs), height, width, args.rounds)}
    print(f"stored {fig['size']}, {fig['pairs']} clip pairs (T=16, {OUT[0]}x{OUT[1]}), one thread; decoding the "
          f"pairs' frames {fig['decode_ms_per_pair']:.2f} ms/pair")
    for name, k in fig["kernels"].items():
        px = "; ".join(f"{c} ({m['clips']} clips) max {m['max_abs']}, mean {m['mean_abs']:.2f}" for c, m in sorted(k["pixels"].items()))
        print(f"  {name:28s} {k['ms_per_pair']:6.2f} ms/pair = {k['x_decode']:.2f} x decode; ceiling of loader / limit "
              f"{k['ceiling']:.2f}; pixels vs torch's: {px}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
