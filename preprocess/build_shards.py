"""Build frame shards (WebDataset tars + Zarr index, format v1) from a dataset's videos, on Dask.

    dask-submit preprocess/build_shards.py --dataset ucf101 --videos UCF-101/ \
        --annotations ucfTrainTestlist/ --out shards/ucf101

With ``--scheduler ADDR`` or ``DASK_SCHEDULER_ADDRESS`` it runs on that cluster; otherwise on a
LocalCluster of ``--workers`` processes (the embedded default). One task per shard.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):        # run by path: import this checkout's packages, not preprocess/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from preprocess import shard_task  # noqa: E402
from preprocess.adapters import DATASETS  # noqa: E402
from preprocess.build_lock import build_lock  # noqa: E402
from preprocess.build_summary import short_videos, split_table, write_failures  # noqa: E402
from preprocess.cluster import connect  # noqa: E402
from preprocess.interrupts import sigterm_as_interrupt  # noqa: E402
from preprocess.plan import BuildPlan, MAX_VIDEOS_PER_SHARD, MIN_SHARDS, plan_build  # noqa: E402
from preprocess.rebuild import check_plan  # noqa: E402
from shards import store  # noqa: E402
from shards.errors import InputError, RunFailed, command, parser, plural  # noqa: E402
from shards.format import (FAILURES_NAME, INDEX_NAME, STATUS_FAILED, STATUS_NAMES, STATUS_OK, TEMP_MARK,  # noqa: E402
                           sidecar_name)
from shards.index import check_index_location, empty_rows, write_index  # noqa: E402
from shards.sources import join, local_path, protocol  # noqa: E402
from shards.writer import read_sidecar  # noqa: E402

SHOW_FAILED = 10


def parse_size(text: str) -> tuple[int, int]:
    """'128x171' -> (height, width)."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HEIGHTxWIDTH, e.g. 128x171; got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r} is too small")
    return h, w


def positive(kind, minimum: int = 1):
    """An argparse type: a finite ``kind`` (int or float) above 0 (for ints: at least ``minimum``),
    with a message naming the value."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"wants a finite number, got {text!r}")
        if value < minimum if kind is int else value <= 0:
            raise argparse.ArgumentTypeError(f"wants a value {'above 0' if minimum else 'of 0 or more'}, got {text!r}")
        return value
    parse.__name__ = f"{'positive' if minimum else 'non-negative'} {kind.__name__}"
    return parse


def parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    mult = units.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in units else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard-size wants bytes, e.g. 512M or 1G; got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"--shard-size wants at least 1 byte, e.g. 512M or 1G; got {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = parser("build_shards.py", __doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which adapter reads the annotations")
    p.add_argument("--videos", required=True, help="folder of the dataset's videos")
    p.add_argument("--annotations", required=True, help="folder (or file) of the dataset's split files")
    p.add_argument("--out", required=True, help="output folder for the tars, sidecars, index.zarr and failures.tsv: "
                                                "a path, or a URL of an object store (s3://bucket/ucf, gs://...)")
    p.add_argument("--name", help="shard file prefix; when not given, the dataset name")
    p.add_argument("--fps", type=positive(float), default=25.0, help="output frame rate")
    p.add_argument("--size", type=parse_size, default="256x341",
                   help="output HEIGHTxWIDTH (the authors' 256-pixel short side, so that training crops reach "
                        "the network at scale 1 or below; 128x171 makes shards 2.3x smaller)")
    p.add_argument("--jpeg-quality", type=int, default=3, choices=range(2, 32), metavar="2..31", help="ffmpeg -q:v, 2 best .. 31")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--videos-per-shard", type=positive(int), default=None,
                   help=f"videos per shard; when not given, {MAX_VIDEOS_PER_SHARD}, or fewer for small sets so that "
                        f"there are at least {MIN_SHARDS} shards (one a video below {2 * MIN_SHARDS} videos) for ranks x "
                        "loader workers to read in parallel")
    g.add_argument("--shard-size", type=parse_bytes, default=None, help="source bytes per shard, e.g. 1G (instead of --videos-per-shard)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shard plan's shuffle")
    p.add_argument("--timeout", type=positive(float), default=600.0, help="seconds allowed per video")
    p.add_argument("--workers", type=positive(int), default=None, help="LocalCluster worker processes; when not given, one per core")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                   help="address of a running Dask scheduler; the default is $DASK_SCHEDULER_ADDRESS, and "
                        "with neither the build starts a LocalCluster")
    p.add_argument("--retries", type=positive(int, minimum=0), default=2, help="retries of a shard task whose worker died")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild shards that are already complete, and remove the shards of another plan "
                        "(other --fps, --size, --videos-per-shard ...) that --out holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _silence_distributed() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def quiet_workers(client) -> None:
    """Before an interrupted build closes the cluster: a worker whose scheduler goes first logs a
    heartbeat traceback that says nothing about the build, so the workers stop logging."""
    _silence_distributed()
    with contextlib.suppress(Exception):
        client.run(_silence_distributed, wait=True)


def gather_index(listing, specs, out: str):
    """Build index rows from the sidecars on disk (not from task results), so a resumed job's index
    is the one an uninterrupted job would write."""
    rows = empty_rows([e.video_id for e in listing.entries], [e.label for e in listing.entries],
                      np.array([e.split for e in listing.entries], np.int8).reshape(len(listing.entries), -1))
    frames = {}
    for spec in specs:
        rec = read_sidecar(join(out, sidecar_name(spec.tar)))
        if rec is None:
            raise RunFailed(f"the sidecar of {spec.tar} is missing or fails its checksum after its task finished; "
                            "re-run the same command to rebuild that shard")
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


def remove_stale_temporaries(out: str) -> int:
    """Temporaries left by a worker (or driver) that died mid-write; the lock says no build is
    writing them."""
    stale = [n for n in store.listdir(out) if n.startswith(".") and TEMP_MARK in n]
    for name in stale:
        store.remove(join(out, name))
    return len(stale)


def submit_all(client, specs, settings, out: str, args, listing, identity) -> tuple[list[dict], list]:
    from distributed import as_completed
    from tqdm import tqdm

    futures = [
        # looked up at call time: a patched shard_task.build_shard (the fault tests) is what runs
        client.submit(shard_task.build_shard, spec, settings, out, args.dataset, listing.splits, spec.digest(identity),
                      args.overwrite, key=f"shard-{spec.number:06d}-{spec.digest(identity)[:12]}",
                      retries=args.retries, pure=False)
        for spec in specs
    ]
    results, failed = [], []
    try:
        bar = tqdm(total=len(futures), unit="shard", disable=args.no_progress, file=sys.stderr)
        # Results arrive with the futures, so the driver waits only in as_completed: a Ctrl-C or
        # SIGTERM landing inside distributed's sync() (fut.result()) makes it log a traceback of its own.
        for fut, res in as_completed(futures, with_results=True, raise_errors=False):
            if fut.status == "finished":
                results.append(res)
            else:           # report every failed shard, then stop; res: (type, exception, traceback)
                failed.append((fut.key, res[1] if isinstance(res, tuple) else res))
            bar.update(1)
        bar.close()
    except BaseException:
        client.cancel(futures)
        raise
    return results, failed


def output_location(text: str) -> str:
    """``--out`` as a local path or a URL a build can write (else one line, exit 2)."""
    out = local_path(text) if text.startswith("file://") else text
    store.check_writable(out)
    return out


@command("build_shards")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = output_location(args.out)
    in_process = protocol(out) == "memory"
    if in_process and args.scheduler:
        raise InputError(f"--out {out}: memory:// lives in this process, which a Dask cluster's workers "
                         "cannot write to; give a path or an object store URL")
    check_index_location(join(out, INDEX_NAME))
    plan = plan_build(args)          # read-only: a refused start writes nothing
    created = store.makedirs(out)
    try:
        with build_lock(out), sigterm_as_interrupt():
            return build(args, out, plan, in_process)
    except InputError:
        if created:                 # nor leaves the folder it made
            store.remove_empty_folder(out)
        raise


def print_summary(listing, specs, results: list[dict], rows: dict, out: str, wall: float, stale: int,
                  n_bad: int) -> None:
    """What the build made: videos by status, shards built or already complete, throughput, the
    split table, short and failed videos, and where the failures file and the index are."""
    status = rows["status"]
    n_frames = int(rows["n_frames"].sum())
    n_bytes = sum(store.size(join(out, s.tar)) or 0 for s in specs)
    built = [r for r in results if not r.get("skipped")]
    counts = ", ".join(f"{int((status == code).sum())} {name}" for code, name in STATUS_NAMES.items())
    print(f"videos: {counts}; shards: {len(specs)} in the set, {len(built)} built, "
          f"{len(results) - len(built)} already complete; {n_frames} frames, {n_bytes / 1e6:.1f} MB in {wall:.1f} s"
          + (f" ({sum(sum(v['n_frames'] for v in r['videos']) for r in built) / wall:.0f} frames/s)" if built else "")
          + (f"; {stale} stale temporary files removed" if stale else ""))
    print(split_table(status, rows["split"], listing.splits, listing.roles))
    print(short_videos(rows["video_id"], status, rows["n_frames"]))
    if listing.both_roles:
        print(listing.both_roles_warning().strip())
    for r in np.flatnonzero(status == STATUS_FAILED)[:SHOW_FAILED]:
        print(f"  failed: {rows['video_id'][r]}: {rows['error'][r]}")
    print(f"failures: {join(out, FAILURES_NAME)} ({n_bad} failed or missing videos, with reasons)")
    print(f"index: {join(out, INDEX_NAME)}")


def build(args, out: str, plan: BuildPlan, in_process: bool = False) -> int:
    listing, specs, settings, identity = plan.listing, plan.specs, plan.settings, plan.identity
    removed = check_plan(out, {"dataset": args.dataset, **plan.attrs["settings"]}, plan.attrs["shards"], args.overwrite)
    if removed:
        print(f"--overwrite: removed the old index and {removed} tars and sidecars of another plan", flush=True)
    print(f"{plural(len(specs), 'shard')} planned for {plural(len(listing.present), 'video')} -> {out}", flush=True)

    client, cluster = connect(args, in_process)
    t0 = time.perf_counter()
    try:
        results, failed_tasks = submit_all(client, specs, settings, out, args, listing, identity)
    except KeyboardInterrupt:
        # Workers of our own LocalCluster are gone once it is closed, so their temporaries are
        # garbage; a shared cluster's workers may still be finishing (complete) shards.
        stale = 0
        quiet_workers(client)
        client.close()
        if cluster is not None:
            cluster.close()
            stale = remove_stale_temporaries(out)
        print(f"build_shards: interrupted; complete shards are kept, nothing was recorded for the videos in flight"
              f"{f' ({stale} temporary tars removed)' if stale else ''}. Re-run the same command to resume.",
              file=sys.stderr, flush=True)
        return 130
    client.close()
    if cluster is not None:
        cluster.close()
    wall = time.perf_counter() - t0
    if failed_tasks:
        # Every task has ended, so no one writes the temporaries a failed one left (a full disk can
        # fail the clean-up of its own tar).
        stale = remove_stale_temporaries(out)
        for key, exc in failed_tasks:
            print(f"shard task {key} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise RunFailed(f"{len(failed_tasks)} of {len(specs)} shard tasks failed; the index was not written"
                        f"{f' ({stale} temporary files removed)' if stale else ''}. "
                        "Re-run the same command to redo only the unfinished shards.")
    stale = remove_stale_temporaries(out)

    rows, frames = gather_index(listing, specs, out)
    write_index(out, plan.attrs, rows, frames)
    n_bad = write_failures(join(out, FAILURES_NAME), rows["video_id"], rows["status"], rows["error"],
                           [e.path for e in listing.entries])

    print_summary(listing, specs, results, rows, out, wall, stale, n_bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
