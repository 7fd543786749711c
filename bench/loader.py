"""Benchmark of the clip-pair loader as training uses it, on the real clips in ../shared/data.

UCF-101's eleven clips are built into shards (``--size``), then read by ``PairLoader`` through real
DataLoader workers (``--workers``, each count in a fresh process so that a worker's RSS is its own),
T=16 at 112x112, rates 1, 2, 4, 8. Per worker count it prints clip pairs per second per core (CPU
of the workers and the main process), and compares with, per core:
  limit  JPEG-decoding just the frames each delivered pair needs, from memory, with simplejpeg;
  pyav   PyAV seeking to each clip's first frame in the source video, then decoding, RGB, crop, resize.
Goals: ours >= 0.6 x limit, peak RSS of a loader worker < 500 MB; ours / pyav is reported. CPU is the
steady state's: the main process's and each worker's over the timed epochs (from /proc).

The limit is timed in this process after the loader's runs, so load that comes and goes on a shared
machine moves the ratio by tens of percent between runs. Each run therefore also reports the share
of its own CPU (workers and main) that its workers spent in the JPEG decoder's calls, timed inside
the workers over the same epochs: the same ratio where our decoding runs as fast as the limit's,
with no time between numerator and denominator.

    python bench/loader.py [--epochs 30] [--workers 1 2] [--size 128x171] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):        # run by path: import this checkout's packages, not bench/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from preprocess.build_shards import main as build_shards  # noqa: E402
from shards.index import read_index  # noqa: E402
from train.threads import set_threads  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
UCF = DATA / "videos/ucf101/UCF-101"
OUT = 112


def cpu(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def build(out: Path, size: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        rc = build_shards(["--dataset", "ucf101", "--videos", str(UCF), "--annotations", str(DATA / "annotations/ucf101"),
                           "--out", str(out), "--videos-per-shard", "4", "--workers", "2", "--size", size, "--no-progress"])
    assert rc == 0


def children() -> list[int]:
    """Pids of this process's live children (the loader's workers)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.append(int(pid))
        except (OSError, IndexError, ValueError):
            continue
    return out


def proc_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the live processes ``pids`` have used so far."""
    total = 0.0
    for pid in pids:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def worker_memory() -> dict[str, float]:
    """Largest Rss, Pss and private (Private_Clean + Private_Dirty) MB among this process's children
    now. A forked worker's Rss counts the pages it shares with the main process (torch's libraries);
    private memory is what a worker costs on its own."""
    worst = {"rss_mb": 0.0, "pss_mb": 0.0, "private_mb": 0.0}
    for pid in children():
        try:
            f = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in open(f"/proc/{pid}/smaps_rollup") if ln.endswith("kB\n")}
        except (OSError, IndexError, ValueError):
            continue
        for k, v in (("rss_mb", f["Rss"]), ("pss_mb", f["Pss"]), ("private_mb", f["Private_Clean"] + f["Private_Dirty"])):
            worst[k] = max(worst[k], v)
    return worst


def count_decoding(workers: int):
    """Make the CPU decoder add, per worker, the thread CPU seconds its ``frames`` calls take and
    the frames they decode to a shared [workers, 2] tensor (workers forked after this inherit it)."""
    import torch

    from shards import decode

    counts = torch.zeros((max(1, workers), 2), dtype=torch.float64).share_memory_()
    view, frames = counts.numpy(), decode.SimpleJpegDecoder.frames

    def counted(self, jpegs, *args, **kwargs):
        t = time.thread_time()
        out = frames(self, jpegs, *args, **kwargs)
        info = torch.utils.data.get_worker_info()
        view[0 if info is None else info.id] += (time.thread_time() - t, len(jpegs))
        return out

    decode.SimpleJpegDecoder.frames = counted
    return counts


def probe(shards: str, workers: int, epochs: int, batch: int) -> dict:
    """Run in its own process: the loader through ``workers`` DataLoader workers for ``epochs``.

    CPU is counted over the timed epochs only: the main process's, and each worker's from /proc at
    the first timed epoch's start and after the last (a worker's start and its warm-up epoch are
    not the steady state; counting a worker's CPU when it exits would include them)."""
    from shards.stream import PairLoader, StreamConfig     # local: --help and the preprocess benches stay torch-free

    set_threads(workers)
    decoding = count_decoding(workers)
    loader = PairLoader(StreamConfig(shards, batch_size=batch, shuffle_buffer=4, out_size=(OUT, OUT)),
                        num_workers=workers, pin_memory=False, lend_batches=True)     # as train.run_start makes it
    seen = []
    memory = {"rss_mb": 0.0, "pss_mb": 0.0, "private_mb": 0.0}
    scans = 0.0
    for e in range(epochs + 1):
        if e == 1:      # epoch 0 warms up (workers start, pages fault in); the steady state is timed
            pids = children()
            c0, w0, t0 = cpu(), proc_cpu(pids), time.perf_counter()
            decoding.zero_()
        loader.set_epoch(e)
        for i, b in enumerate(loader):
            if i == 1 and e in (1, epochs):     # the /proc scan's own CPU is not the loader's
                s0 = cpu()
                memory = {k: max(v, worker_memory()[k]) for k, v in memory.items()}
                scans += cpu() - s0
            if e:
                seen.append((b["video_id"], b["idx1"].clone(), b["idx2"].clone()))
    wall = time.perf_counter() - t0
    main_s, workers_s = cpu() - c0 - scans, proc_cpu(pids) - w0
    decode_s, decoded = decoding.sum(0).tolist()
    del loader, b
    gc.collect()        # persistent workers exit with their DataLoader: their peak RSS is then the children's
    time.sleep(0.5)
    pairs = [(v, np.union1d(a, c).tolist()) for vs, a1, a2 in seen for v, a, c in zip(vs, a1.numpy(), a2.numpy())]
    return {"pairs": pairs, "cpu_s": main_s + workers_s, "main_cpu_s": main_s, "workers_cpu_s": workers_s, "wall_s": wall,
            "decode_cpu_s": decode_s if decoded else None,      # None: workers not forked (the count did not reach them)
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            **{f"worker_{k}": v for k, v in memory.items()}}


def bench_limit(shards: Path, pairs) -> float:
    import simplejpeg

    idx = read_index(shards)
    blobs = {}
    for r in idx.select():
        offs, sizes = idx.frames_of(r)
        with open(shards / idx.shards[idx.shard[r]], "rb") as f:
            blobs[str(idx.video_id[r])] = [(f.seek(o), f.read(s))[1] for o, s in zip(offs, sizes)]
    c0 = cpu()
    for vid, needed in pairs:
        for i in needed:
            simplejpeg.decode_jpeg(blobs[vid][i], colorspace="RGB")
    return len(pairs) / (cpu() - c0)


def bench_pyav(pairs, fps: float = 25.0) -> float:
    """Each clip of each pair: seek to the keyframe before its first frame, decode to its last."""
    import av
    import torch
    import torch.nn.functional as F

    paths = {p.stem: p for p in UCF.rglob("*.*")}
    c0 = cpu()
    for vid, needed in pairs:
        needed = np.asarray(needed)
        runs = np.split(needed, np.flatnonzero(np.diff(needed) > 8) + 1)      # the clips' frame ranges
        with av.open(str(paths[vid])) as container:
            stream = container.streams.video[0]
            for run in runs:
                want = list(run / fps)
                container.seek(int(want[0] / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time + 0.5 / fps < want[0]:
                        continue
                    img = frame.to_ndarray(format="rgb24")
                    t = torch.from_numpy(img[: img.shape[0] // 2, : img.shape[1] // 2]).permute(2, 0, 1)[None]
                    F.interpolate(t, size=(OUT, OUT), mode="bilinear", antialias=True)
                    while want and want[0] <= frame.time + 0.5 / fps:
                        want.pop(0)
                    if not want:
                        break
    return len(pairs) / (cpu() - c0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="timed epochs over the eleven clips per worker count "
                   "(after one untimed warm-up epoch)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts to measure")
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--size", default="128x171", help="stored frame size of the shards built for the run")
    p.add_argument("--pyav-pairs", type=int, default=40, help="pairs decoded with PyAV")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--probe", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        shards, workers, epochs, batch = args.probe
        print(json.dumps(probe(shards, int(workers), int(epochs), int(batch))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        build(shards, args.size)
        tar_bytes = sum(f.stat().st_size for f in shards.glob("*.tar"))
        runs = {}
        for w in args.workers:
            out = subprocess.run([sys.executable, __file__, "--probe", str(shards), str(w), str(args.epochs), str(args.batch)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            runs[w] = json.loads(out.stdout.strip().splitlines()[-1])
        pairs = runs[args.workers[0]]["pairs"]
        limit = bench_limit(shards, pairs)
        pyav = bench_pyav(pairs[: args.pyav_pairs])
    frames = float(np.mean([len(n) for _, n in pairs]))
    fig = {"size": args.size, "shard_bytes_per_video": tar_bytes / 11, "frames_per_pair": frames,
           "limit_pairs_per_s_core": limit, "pyav_pairs_per_s_core": pyav, "workers": {}}
    print(f"clip pairs, T=16, {OUT}x{OUT}, rates 1/2/4/8, stored {args.size} ({tar_bytes / 11 / 1e6:.2f} MB of shard per "
          f"video), {frames:.1f} distinct frames per pair, batch {args.batch}:")
    print(f"  JPEG-decode limit:        {limit:7.1f} pairs/s/core  ({limit * frames:.0f} frames/s/core)")
    print(f"  PyAV seeking to each clip:{pyav:7.1f} pairs/s/core  ({min(len(pairs), args.pyav_pairs)} pairs)")
    for w, r in runs.items():
        ours = len(r["pairs"]) / r["cpu_s"]
        fig["workers"][w] = {"pairs": len(r["pairs"]), "pairs_per_s_core": ours, "pairs_per_s_wall": len(r["pairs"]) / r["wall_s"],
                             "ratio_to_limit": ours / limit, "ratio_to_pyav": ours / pyav,
                             "main_cpu_s": r["main_cpu_s"], "workers_cpu_s": r["workers_cpu_s"],
                             "decode_share": r["decode_cpu_s"] / r["cpu_s"] if r["decode_cpu_s"] else None,
                             **{k: r[k] for k in ("worker_peak_rss_mb", "worker_rss_mb", "worker_pss_mb", "worker_private_mb")}}
        print(f"  ours, {w} worker(s):       {ours:7.1f} pairs/s/core  ({len(r['pairs']) / r['wall_s']:.1f} wall; CPU "
              f"{r['workers_cpu_s']:.2f} s workers + {r['main_cpu_s']:.2f} s main); "
              f"/ limit {ours / limit:.2f} (goal >= 0.6; decoding's share of this run's CPU "
              f"{fig['workers'][w]['decode_share'] or float('nan'):.2f}); / PyAV {ours / pyav:.1f}x (at 0.6 of the limit ~7-10x); "
              f"worker peak RSS {r['worker_peak_rss_mb']:.0f} MB (goal < 500; PSS {r['worker_pss_mb']:.0f}, "
              f"private {r['worker_private_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
