"""Time and peak memory of the retrieval top-k step, ours (chunked, stable ties) against a plain
full-matrix argsort (the VCOP way), for a UCF-101-size (9,537 gallery x 3,783 queries) and a
Kinetics-size (240,000 x 20,000) problem with 512-d random features. Each measurement runs in its
own process, so peak RSS is that of the step alone (plus the features).

    python bench/retrieval.py [--kinetics-queries 20000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not bench/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from train.threads import set_threads  # noqa: E402

SIZES = {"ucf101": (9537, 3783), "kinetics400": (240_000, 20_000)}
MEM_LIMIT_GB = 20.0          # what the full-matrix way may use on this 24 GiB machine


def one(size: str, way: str, queries: int | None) -> dict:
    import torch

    from eval.knn import topk_cosine     # local: imported in the measured child process only, after set_threads

    set_threads()

    g_n, q_n = SIZES[size]
    q_n = queries or q_n
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(g_n, 512, generator=gen)
    qs = torch.randn(q_n, 512, generator=gen)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    if way == "ours":
        topk_cosine(qs, gallery, 50)
    else:
        sims = torch.nn.functional.normalize(qs, dim=1) @ torch.nn.functional.normalize(gallery, dim=1).t()
        torch.argsort(sims, dim=1, descending=True)[:, :50]
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": dt, "peak_gb": peak, "features_gb": base, "queries": q_n, "gallery": g_n}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinetics-queries", type=int, default=20_000)
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        size, way, q = args.one
        print(json.dumps(one(size, way, int(q) or None)))
        return 0
    for size, (g, q) in SIZES.items():
        q = args.kinetics_queries if size == "kinetics400" else q
        need_gb = q * g * (4 + 8) / 2**30          # float32 similarities + int64 argsort
        print(f"{size}: {g} gallery x {q} queries, 512-d")
        for way in ("ours", "argsort"):
            if way == "argsort" and need_gb > MEM_LIMIT_GB:
                print(f"  {way:8s} does not fit: needs about {need_gb:.0f} GB for the full matrix and its argsort")
                continue
            r = subprocess.run([sys.executable, __file__, "--one", size, way, str(q)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"  {way:8s} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
                continue
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"  {way:8s} {m['seconds']:8.2f} s   peak RSS {m['peak_gb']:.2f} GB "
                  f"(features and runtime {m['features_gb']:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
