"""One CPU process with one other core busy: pretraining clips/s with the project's default intra-op
threads (OMP_NUM_THREADS unset) against OMP_NUM_THREADS=1 (issue 21's row; goal >= 0.9x).

    python bench/threads.py [--steps 50] [--rounds 3] [--shards DIR] [--checkout DIR] [--json FILE]

The bench makes its own busy core: a process spinning on the last core this one may use, killed at
the end. Each run pretrains configs/tiny_cpu.yaml (data.num_workers=0) for --steps steps on the real
UCF-101 clips of ../shared/data (shards built into a temporary folder unless --shards is given) in a
fresh process; the variants alternate, in reversed order every other round, so that a drift in the
machine's other load falls on both. The figure is each run's steady-state clips/s (the run log's
"end" event: its first 10% of steps excluded); the ratio is of the variants' medians. The machine's
load average is printed before the spinner starts and after every run: a 1-min load above ~1 before
the start means other work shared the cores and the figures are disturbed.

--checkout runs another checkout's train/pretrain.py (e.g. an export of main) for before/after
figures from the same bench; --variant LABEL:KEY=VALUE[,KEY=VALUE] adds a variant with those
environment variables on top of the default's (e.g. passive:OMP_WAIT_POLICY=PASSIVE).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Thread settings every variant starts without, so that only the variant's own take effect.
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# train.epochs high so that train.max_steps, not tiny_cpu's 2 epochs of 11 clips, sets the length
COMMON = ["data.split=all", "data.num_workers=0", "train.tensorboard=false", "train.ckpt_every=100000",
          "train.epochs=100000", "train.log_every=10"]
SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def build_shards(out: Path) -> Path:
    data = ROOT.parent / "shared" / "data"
    r = subprocess.run([sys.executable, "preprocess/build_shards.py", "--size", "128x171", "--dataset", "ucf101",
                        "--videos", str(data / "videos/ucf101/UCF-101"),
                        "--annotations", str(data / "annotations/ucf101"),
                        "--out", str(out), "--videos-per-shard", "1", "--workers", "1", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise SystemExit(f"building shards of {data} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return out


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    label, _, pairs = text.partition(":")
    env = dict(p.split("=", 1) for p in pairs.split(",") if "=" in p)
    if not label or not env:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected LABEL:KEY=VALUE[,KEY=VALUE]")
    return label, env


def run_once(checkout: Path, shards: str, steps: int, env_extra: dict[str, str], out: Path) -> dict:
    """One pretraining run in a fresh process: its steady clips/s and the threads its summary names."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(env_extra, PYTHONPATH=str(checkout))
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "train/pretrain.py", "--config", "configs/tiny_cpu.yaml",
                        f"data.shards={shards}", *COMMON, f"train.max_steps={steps}", "--out", str(out), "--overwrite"],
                       cwd=checkout, capture_output=True, text=True, env=env)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"pretraining with {env_extra or 'the defaults'} failed ({r.returncode}): "
                         f"{r.stderr.strip().splitlines()[-1:]}")
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(e for e in events if e.get("event") == "start")
    end = next(e for e in events if e.get("event") == "end")
    threads = re.search(r"\d+ intra-op threads? \([^)]*\)", start["summary"])
    # CPU seconds of the whole run (start-up included): a spinning thread shows as CPU time without clips
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return {"clips_per_s": end["steady_clips_per_s"], "threads": threads.group(0) if threads else "not named",
            "cpu_s": cpu, "load": os.getloadavg()}


def report(runs: list[dict], labels: list[str], before: tuple) -> dict:
    med = {v: statistics.median(r["clips_per_s"] for r in runs if r["variant"] == v) for v in labels}
    base, other = labels[-1], labels[:-1]
    print(f"\nsteady-state clips/s, median of {sum(r['variant'] == base for r in runs)} runs each:")
    for v in labels:
        each = ", ".join(f"{r['clips_per_s']:.1f}" for r in runs if r["variant"] == v)
        print(f"  {v:24s} {med[v]:6.1f}   (runs: {each})")
    ratios = {v: med[v] / med[base] for v in other}
    for v in other:
        print(f"ratio {v} / {base}: {ratios[v]:.2f}x")
    print(f"load before the bench started: {', '.join(f'{x:.2f}' for x in before)}; now: {load()}")
    if before[0] > 1.0:
        print("the machine was busy before the bench started (1-min load > 1): other work shared the cores, "
              "the figures are disturbed")
    return {"median_clips_per_s": med, "ratio": ratios, "load_before": before, "runs": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=50, help="pretraining steps per run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternating")
    p.add_argument("--shards", help="shard set of the real clips (default: built into a temporary folder)")
    p.add_argument("--checkout", default=str(ROOT), help="checkout whose train/pretrain.py runs")
    p.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="LABEL:KEY=VALUE",
                   help="an extra variant: the default's environment plus these variables (repeatable)")
    p.add_argument("--idle", action="store_true",
                   help="no spinner: the same runs with no core made busy (what a variant costs on idle cores)")
    p.add_argument("--json", help="also write the runs and the ratio to this file")
    args = p.parse_args()
    variants = {"default threads": {}, **dict(args.variant), "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}}
    labels = list(variants)
    before = os.getloadavg()
    print(f"uptime before the bench: {load()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="cstp_threads_"))
    shards = args.shards or str(build_shards(tmp / "shards"))
    cores = sorted(os.sched_getaffinity(0))
    spinner = None if args.idle else subprocess.Popen([sys.executable, "-c", SPIN, str(cores[-1])])
    busy = "no core made busy (--idle)" if args.idle else f"spinner (pid {spinner.pid}) busy on core {cores[-1]}"
    print(f"{busy}, {len(cores)} cores; {args.steps} steps a run, checkout {args.checkout}", flush=True)
    runs = []
    try:
        for rnd in range(args.rounds):
            for v in (labels if rnd % 2 == 0 else labels[::-1]):
                t0 = time.perf_counter()
                r = run_once(Path(args.checkout), shards, args.steps, variants[v], tmp / "run")
                runs.append({"variant": v, "round": rnd, **r})
                print(f"round {rnd + 1} {v:24s} {r['clips_per_s']:6.1f} clips/s  {r['threads']}; "
                      f"{time.perf_counter() - t0:.0f} s, {r['cpu_s']:.0f} CPU s; {load()}", flush=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    result = report(runs, labels, before)
    if args.json:
        doc = {"steps": args.steps, "checkout": args.checkout, "idle": args.idle, **result}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
