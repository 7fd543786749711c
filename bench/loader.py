"""Benchmark of the clip-pair loader on the real clips in ../shared/data (UCF-101's eleven).

T=16 at 112x112, rates drawn from 1, 2, 4, 8. Clip pairs per second per core of:
  ours   the full loader (read tar, decode the needed JPEGs, sample, crop, resize, rotate), one worker;
  limit  JPEG-decoding just the frames each of those pairs needs, from memory, with simplejpeg;
  pyav   decoding the same clips from the source videos with PyAV (seek, decode, RGB, crop, resize).
Goals: ours >= 0.6 x limit, ours >= 15 x pyav, peak RSS of a loader worker < 500 MB.

    python bench/loader.py [--epochs 20]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
# bench/preprocess.py would shadow the `preprocess` package for a script run from this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
DATA = ROOT.parent / "shared" / "data"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(out: Path) -> None:
    from preprocess.build_shards import main as build_shards

    with contextlib.redirect_stdout(io.StringIO()):
        rc = build_shards(["--dataset", "ucf101", "--videos", str(DATA / "videos/ucf101/UCF-101"),
                           "--annotations", str(DATA / "annotations/ucf101"), "--out", str(out),
                           "--videos-per-shard", "4", "--workers", "2", "--no-progress"])
    assert rc == 0


def loader_cfg(shards: Path):
    from shards.stream import StreamConfig

    return StreamConfig(str(shards), batch_size=1, shuffle_buffer=4, out_size=(112, 112))


def bench_ours(shards: Path, epochs: int):
    from shards.stream import ClipPairStream

    ds = ClipPairStream(loader_cfg(shards))
    pairs = []
    c0, t0 = cpu(), time.perf_counter()
    for e in range(epochs):
        ds.set_epoch(e)
        for b in ds:
            pairs.append((b["video_id"][0], b["idx1"][0].numpy(), b["idx2"][0].numpy()))
    return pairs, cpu() - c0, time.perf_counter() - t0


def bench_limit(shards: Path, pairs) -> float:
    import simplejpeg

    from shards.index import read_index

    idx = read_index(shards)
    blobs = {}
    for r in idx.select():
        offs, sizes = idx.frames_of(r)
        with open(shards / idx.shards[idx.shard[r]], "rb") as f:
            blobs[str(idx.video_id[r])] = [(f.seek(o), f.read(s))[1] for o, s in zip(offs, sizes)]
    c0 = cpu()
    for vid, i1, i2 in pairs:
        for i in np.union1d(i1, i2):
            simplejpeg.decode_jpeg(blobs[vid][i], colorspace="RGB")
    return cpu() - c0


def bench_pyav(pairs, limit_pairs: int) -> tuple[float, int]:
    import av
    import torch.nn.functional as F

    paths = {p.stem: p for p in (DATA / "videos/ucf101/UCF-101").rglob("*.*")}
    c0 = cpu()
    n = 0
    for vid, i1, i2 in pairs[:limit_pairs]:
        with av.open(str(paths[vid])) as container:
            stream = container.streams.video[0]
            src_fps = float(stream.average_rate or stream.guessed_rate or 25)
            want = {int(round(i / 25.0 * src_fps)) for i in np.union1d(i1, i2)}
            frames = {}
            for k, frame in enumerate(container.decode(stream)):
                if k in want:
                    frames[k] = frame.to_ndarray(format="rgb24")
                if k >= max(want):
                    break
            for k, img in frames.items():
                t = torch.from_numpy(img[: img.shape[0] // 2, : img.shape[1] // 2]).permute(2, 0, 1)[None]
                F.interpolate(t, size=(112, 112), mode="bilinear", antialias=True)
        n += 1
    return cpu() - c0, n


def rss_probe(shards: str) -> None:
    """Run the loader with one DataLoader worker; print the worker's peak RSS (MB)."""
    from shards.stream import PairLoader

    loader = PairLoader(loader_cfg(Path(shards)), num_workers=1)
    for e in range(3):
        loader.set_epoch(e)
        for _ in loader:
            pass
    print(json.dumps({"worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--pyav-pairs", type=int, default=60)
    p.add_argument("--rss-probe", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.rss_probe:
        rss_probe(args.rss_probe)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        build(shards)
        pairs, ours_cpu, ours_wall = bench_ours(shards, args.epochs)
        limit_cpu = bench_limit(shards, pairs)
        pyav_cpu, pyav_n = bench_pyav(pairs, args.pyav_pairs)
        frames = np.mean([len(np.union1d(a, b)) for _, a, b in pairs])
        out = subprocess.run([sys.executable, __file__, "--rss-probe", str(shards)], capture_output=True, text=True)
        rss = json.loads(out.stdout.strip().splitlines()[-1])["worker_peak_rss_mb"] if out.returncode == 0 else float("nan")
    n = len(pairs)
    ours, limit, pyav = n / ours_cpu, n / limit_cpu, pyav_n / pyav_cpu
    print(f"clip pairs, T=16, 112x112, rates 1/2/4/8, {n} pairs ({frames:.1f} distinct frames each):")
    print(f"  ours (full loader, 1 worker): {ours:7.1f} pairs/s/core  ({n / ours_wall:.1f} wall)")
    print(f"  JPEG-decode limit:            {limit:7.1f} pairs/s/core  ({limit * frames:.0f} frames/s/core)")
    print(f"  PyAV from source videos:      {pyav:7.1f} pairs/s/core  ({pyav_n} pairs)")
    print(f"  ours / limit: {ours / limit:.2f} (goal >= 0.6);  ours / PyAV: {ours / pyav:.1f}x (goal >= 15x)")
    print(f"  peak RSS of a loader worker: {rss:.0f} MB (goal < 500 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
