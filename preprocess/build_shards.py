"""Build frame shards (WebDataset tars + Zarr index, format v1) from a dataset's videos, on Dask.

    dask-submit preprocess/build_shards.py --dataset ucf101 --videos UCF-101/ \
        --annotations ucfTrainTestlist/ --out shards/ucf101

With ``--scheduler ADDR`` or ``DASK_SCHEDULER_ADDRESS`` it runs on that cluster; otherwise on a
LocalCluster of ``--workers`` processes (the embedded default). One task per shard.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np


def parse_size(text: str) -> tuple[int, int]:
    """'128x171' -> (height, width)."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HEIGHTxWIDTH, e.g. 128x171; got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r} is too small")
    return h, w


def parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    mult = units.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in units else t) * mult)


def build_parser() -> argparse.ArgumentParser:
    from preprocess.adapters import DATASETS

    p = argparse.ArgumentParser(prog="build_shards.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--videos", required=True, help="folder of the dataset's videos")
    p.add_argument("--annotations", required=True, help="folder (or file) of the dataset's split files")
    p.add_argument("--out", required=True, help="output folder for the tars and index.zarr")
    p.add_argument("--name", help="shard file prefix (default: the dataset name)")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--size", type=parse_size, default=(128, 171), help="output HEIGHTxWIDTH (default 128x171)")
    p.add_argument("--jpeg-quality", type=int, default=3, help="ffmpeg -q:v, 2 best .. 31 (default 3)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--videos-per-shard", type=int, default=None, help="videos per shard (default 64)")
    g.add_argument("--shard-size", type=parse_bytes, default=None, help="source bytes per shard, e.g. 1G")
    p.add_argument("--seed", type=int, default=0, help="seed of the shard plan's shuffle")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per video (default 600)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                   help="address of a running Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster)")
    p.add_argument("--retries", type=int, default=2, help="retries of a shard task whose worker died")
    p.add_argument("--overwrite", action="store_true", help="rebuild shards that are already complete")
    p.add_argument("--no-progress", action="store_true")
    return p


def connect(args):
    from distributed import Client, LocalCluster

    if args.scheduler:
        try:
            return Client(args.scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise SystemExit(f"build_shards: cannot reach the Dask scheduler at {args.scheduler}: {exc}")
    n = args.workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def gather_index(listing, specs, out: Path, attrs: dict):
    """Build index rows from the sidecars on disk (not from task results), so a resumed job's index
    is the one an uninterrupted job would write."""
    from shards.format import STATUS_OK, sidecar_name
    from shards.index import empty_rows
    from shards.writer import read_sidecar

    rows = empty_rows([e.video_id for e in listing.entries], [e.label for e in listing.entries],
                      np.array([e.split for e in listing.entries], np.int8).reshape(len(listing.entries), -1))
    frames = {}
    for spec in specs:
        rec = read_sidecar(out / sidecar_name(spec.tar))
        if rec is None:
            raise RuntimeError(f"sidecar of {spec.tar} is missing or unreadable after its task finished")
        for v in rec["videos"]:
            r = v["row"]
            rows["status"][r] = v["status"]
            rows["error"][r] = v["error"]
            rows["n_frames"][r] = v["n_frames"]
            rows["source_fps"][r] = np.nan if v["source_fps"] is None else v["source_fps"]
            rows["duration"][r] = np.nan if v["duration"] is None else v["duration"]
            if v["status"] == STATUS_OK:
                rows["shard"][r] = spec.number
                frames[r] = (v["frame_offset"], v["frame_size"])
    return rows, frames


def remove_stale_temporaries(out: Path) -> int:
    """Temporary tars left by a worker that died mid-shard (the retry wrote its own)."""
    stale = [p for p in out.glob(".*.tmp-*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def main(argv: list[str] | None = None) -> int:
    from distributed import as_completed
    from tqdm import tqdm

    from preprocess.adapters import load_listing
    from preprocess.plan import plan_shards
    from preprocess.shard_task import build_shard
    from preprocess.transcode import TranscodeSettings
    from shards.format import STATUS_FAILED, STATUS_MISSING, STATUS_OK
    from shards.index import write_index

    args = build_parser().parse_args(argv)
    if args.videos_per_shard is None and args.shard_size is None:
        args.videos_per_shard = 64
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = args.name or args.dataset

    listing = load_listing(args.dataset, args.videos, args.annotations)
    print(listing.report(), flush=True)
    specs = plan_shards(listing, prefix, seed=args.seed, videos_per_shard=args.videos_per_shard,
                        shard_bytes=args.shard_size)
    settings = TranscodeSettings(fps=args.fps, height=args.size[0], width=args.size[1],
                                 jpeg_quality=args.jpeg_quality, timeout=args.timeout)
    # The timeout changes no byte of the output, so it is not part of a shard's identity.
    identity = {k: v for k, v in dataclasses.asdict(settings).items() if k != "timeout"}
    print(f"{len(specs)} shards planned for {len(listing.present)} videos -> {out}", flush=True)

    client, cluster = connect(args)
    t0 = time.perf_counter()
    failed_tasks = []
    results = []
    try:
        futures = [
            client.submit(build_shard, spec, settings, str(out), args.dataset, listing.splits,
                          spec.digest(identity), args.overwrite, key=f"shard-{spec.number:06d}-{spec.digest(identity)[:12]}",
                          retries=args.retries, pure=False)
            for spec in specs
        ]
        bar = tqdm(total=len(futures), unit="shard", disable=args.no_progress, file=sys.stderr)
        for fut in as_completed(futures):
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - report every failed shard, then stop
                failed_tasks.append((fut.key, exc))
            bar.update(1)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    wall = time.perf_counter() - t0
    if failed_tasks:
        for key, exc in failed_tasks:
            print(f"shard task {key} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"{len(failed_tasks)} of {len(specs)} shard tasks failed; the index was not written. "
              "Re-run the same command to redo only the unfinished shards.", file=sys.stderr)
        return 1
    stale = remove_stale_temporaries(out)

    attrs = {
        "dataset": args.dataset, "fps": args.fps, "height": args.size[0], "width": args.size[1],
        "classes": listing.classes, "splits": listing.splits, "shards": [s.tar for s in specs],
        "settings": {**identity, "seed": args.seed, "videos_per_shard": args.videos_per_shard,
                     "shard_size": args.shard_size, "name": prefix},
    }
    rows, frames = gather_index(listing, specs, out, attrs)
    write_index(out, attrs, rows, frames)

    status = rows["status"]
    n_frames = int(rows["n_frames"].sum())
    n_bytes = sum((out / s.tar).stat().st_size for s in specs)
    built = [r for r in results if not r.get("skipped")]
    print(f"videos: {int((status == STATUS_OK).sum())} ok, {int((status == STATUS_FAILED).sum())} failed, "
          f"{int((status == STATUS_MISSING).sum())} missing; shards: {len(built)} built, "
          f"{len(results) - len(built)} already complete; {n_frames} frames, {n_bytes / 1e6:.1f} MB in {wall:.1f} s"
          + (f" ({sum(sum(v['n_frames'] for v in r['videos']) for r in built) / wall:.0f} frames/s)" if built else "")
          + (f"; {stale} stale temporary files removed" if stale else ""))
    for r in np.flatnonzero(status == STATUS_FAILED):
        print(f"  failed: {rows['video_id'][r]}: {rows['error'][r]}")
    print(f"index: {out / 'index.zarr'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
