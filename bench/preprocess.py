"""Benchmark of the preprocess stage on the real clips in ../shared/data.

1. Transcode, one process at a time: frames per second per core of our path (probe, ffmpeg decode +
   fps + scale + JPEG encode, pipe, split) against bare ffmpeg running the same command line to
   /dev/null, in the same run. Goal: ratio >= 0.9.
2. The Dask job's throughput with 1 and with 2 LocalCluster workers (cluster start excluded).
   Goal: >= 1.8x on 2 cores.
3. The Dask job against ``xargs -P N`` running the same ffmpeg command lines (to /dev/null) on the
   same clips: the job alone (the driver's own wall time, cluster start excluded) and the whole
   ``python preprocess/build_shards.py`` process (interpreter, cluster start and stop included).
   Goal: job <= 1.1x the xargs wall time.
4. Where the job's CPU goes: each worker's own CPU seconds (our Python and Dask's) beside its
   ffmpeg children's, and the driver's (the in-process scheduler, the nannies, the client), over
   the job alone (between the first task's submission and the last result), with 2 workers.

    python bench/preprocess.py [--repeat 3] [--parts 1,2,3,4]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):        # run by path: import this checkout's packages, not bench/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import preprocess.build_shards as bs  # noqa: E402
from preprocess.adapters.ucf101 import write_lists  # noqa: E402
from preprocess.probe import looks_like_elementary_stream  # noqa: E402
from preprocess.transcode import TranscodeSettings, build_command, transcode  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "data" / "videos"
# The driver's summary line: "... N frames, X MB in T s (R frames/s)".
_SUMMARY = re.compile(r"(\d+) frames, ([\d.]+) MB in ([\d.]+) s")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


def bench_transcode(clips: list[Path], repeat: int) -> float:
    s = TranscodeSettings()
    frames = 0
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(repeat):
        for p in clips:
            frames += len(transcode(str(p), s).frames)
    ours_cpu, ours_wall = cpu_seconds() - c0, time.perf_counter() - t0

    cmds = []
    for p in clips:
        cmd = build_command(str(p), looks_like_elementary_stream(str(p)), s)
        cmds.append([c if c != "pipe:" else "/dev/null" for c in cmd] + ["-y"])
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(repeat):
        for cmd in cmds:
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0 or "Error" in r.stderr:
                raise RuntimeError(f"bare ffmpeg failed: {r.stderr[-500:]}")
    bare_cpu, bare_wall = cpu_seconds() - c0, time.perf_counter() - t0

    print(f"transcode, {len(clips)} real clips x {repeat}, {frames} frames at 25 fps, {s.height}x{s.width}:")
    print(f"  ours:        {frames / ours_cpu:8.0f} frames/s/core  ({frames / ours_wall:.0f} frames/s wall)")
    print(f"  bare ffmpeg: {frames / bare_cpu:8.0f} frames/s/core  ({frames / bare_wall:.0f} frames/s wall)")
    print(f"  ratio ours/bare (per core): {(frames / ours_cpu) / (frames / bare_cpu):.2f}   (goal >= 0.9)")
    # ffmpeg 7+ runs demux, decode, filter, encode and mux in threads of their own, so one
    # transcode already keeps more than one core busy: that bounds what a second worker can add.
    print(f"  cores busy per transcode (bare ffmpeg cpu/wall): {bare_cpu / bare_wall:.2f}")
    return bare_cpu / bare_wall


def make_dataset(root: Path, clips: list[Path], copies: int) -> tuple[Path, Path]:
    """UCF-101 layout of symlinks to the real clips, each `copies` times, with split lists."""
    videos, lists = root / "videos", root / "lists"
    entries = []
    for k in range(copies):
        for p in clips:
            d = videos / p.parent.name
            d.mkdir(parents=True, exist_ok=True)
            name = f"{p.stem}_copy{k}"
            (d / (name + p.suffix)).symlink_to(p.resolve())
            entries.append((p.parent.name, name, [1, 1, 1]))
    write_lists(lists, sorted({p.parent.name for p in clips}), entries)
    return videos, lists


def bench_job(clips: list[Path], copies: int, cores_per_transcode: float) -> None:
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        videos, lists = make_dataset(Path(tmp), clips, copies)
        for workers in (1, 2):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                rc = bs.main(["--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists),
                            "--out", f"{tmp}/out{workers}", "--videos-per-shard", "2", "--workers", str(workers),
                            "--no-progress"])
            assert rc == 0, buf.getvalue()
            m = re.search(_SUMMARY.pattern + r" \((\d+) frames/s\)", buf.getvalue())
            rates[workers] = int(m.group(4))
            print(f"job, {workers} worker(s): {m.group(1)} frames, {m.group(2)} MB in {m.group(3)} s -> {m.group(4)} frames/s")
    ideal = min(2.0, (os.cpu_count() or 1) / cores_per_transcode)
    print(f"  speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x   (goal >= 1.8x on 2 cores; this machine has "
          f"{os.cpu_count()}; with {cores_per_transcode:.2f} cores per transcode the ceiling is {ideal:.2f}x)")


def _usage() -> tuple[float, float]:
    """(this process's CPU seconds, its reaped children's): run on each worker by ``client.run``."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def bench_cpu(clips: list[Path], copies: int, workers: int) -> None:
    submit_all, seen = bs.submit_all, {}

    def measured(client, *args, **kw):
        before, driver = client.run(_usage), _usage()[0]
        try:
            return submit_all(client, *args, **kw)
        finally:
            after = client.run(_usage)
            seen["own"] = sum(after[w][0] - before[w][0] for w in after)
            seen["ffmpeg"] = sum(after[w][1] - before[w][1] for w in after)
            seen["driver"] = _usage()[0] - driver

    with tempfile.TemporaryDirectory() as tmp:
        videos, lists = make_dataset(Path(tmp), clips, copies)
        bs.submit_all = measured
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                rc = bs.main(["--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out",
                              f"{tmp}/out", "--videos-per-shard", "2", "--workers", str(workers), "--no-progress"])
        finally:
            bs.submit_all = submit_all
    assert rc == 0
    print(f"CPU seconds over the job ({workers} workers): ffmpeg {seen['ffmpeg']:.2f}, workers' own {seen['own']:.2f} "
          f"({seen['own'] / seen['ffmpeg']:.1%} of ffmpeg's), driver {seen['driver']:.2f} "
          f"({seen['driver'] / seen['ffmpeg']:.1%})")


def xargs_commands(videos: Path) -> list[str]:
    """The job's ffmpeg command line for each video, writing to /dev/null, as shell lines."""
    s = TranscodeSettings()
    lines = []
    for p in sorted(x for x in videos.rglob("*.*")):
        cmd = build_command(str(p), looks_like_elementary_stream(str(p)), s)
        lines.append(shlex.join([c if c != "pipe:" else "/dev/null" for c in cmd] + ["-y"]))
    return lines


def bench_xargs(clips: list[Path], copies: int, workers: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        videos, lists = make_dataset(Path(tmp), clips, copies)
        cmds = Path(tmp) / "cmds.txt"
        cmds.write_text("\n".join(xargs_commands(videos)) + "\n")
        n = len(cmds.read_text().splitlines())
        xargs, job, whole = [], [], []
        for k in range(repeat):
            t0 = time.perf_counter()
            with open(cmds) as f:
                subprocess.run(["xargs", "-P", str(workers), "-d", "\n", "-n", "1", "sh", "-c"], stdin=f, check=True,
                               stderr=subprocess.DEVNULL)
            xargs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, str(ROOT / "preprocess/build_shards.py"), "--dataset", "ucf101",
                                "--videos", str(videos), "--annotations", str(lists), "--out", f"{tmp}/out{k}",
                                "--videos-per-shard", "2", "--workers", str(workers), "--no-progress"],
                               capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            whole.append(time.perf_counter() - t0)
            assert r.returncode == 0, r.stderr[-2000:]
            job.append(float(_SUMMARY.search(r.stdout).group(3)))
    best = {name: min(v) for name, v in (("xargs", xargs), ("job", job), ("whole", whole))}
    print(f"job vs xargs -P {workers}, {n} transcodes ({copies} copies of {len(clips)} real clips), best of {repeat}:")
    print(f"  xargs -P {workers} ffmpeg ... /dev/null: {best['xargs']:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in xargs)})")
    print(f"  job (driver's wall, no cluster start): {best['job']:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in job)})")
    print(f"  whole build_shards.py process:        {best['whole']:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in whole)})")
    print(f"  ratio job/xargs: {best['job'] / best['xargs']:.2f}x (goal <= 1.1x); "
          f"whole/xargs: {best['whole'] / best['xargs']:.2f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--copies", type=int, default=4, help="copies of each clip in the job benchmarks")
    p.add_argument("--workers", type=int, default=2, help="N of xargs -P N and of the job's workers (part 3)")
    p.add_argument("--parts", default="1,2,3,4", help="which benchmarks to run, e.g. 3")
    args = p.parse_args()
    parts = {int(x) for x in args.parts.split(",")}
    clips = sorted(VIDEOS.rglob("*.*"))
    if not clips:
        print(f"no clips under {VIDEOS}", file=sys.stderr)
        return 1
    cores = bench_transcode(clips, args.repeat) if parts & {1, 2} else 1.0
    if 2 in parts:
        bench_job(clips, args.copies, cores)
    if 3 in parts:
        bench_xargs(clips, args.copies, args.workers, args.repeat)
    if 4 in parts:
        bench_cpu(clips, args.copies, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
