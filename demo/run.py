"""The whole pipeline on an embedded default, in one command (`make demo`):

1. generate a small labelled video dataset in UCF-101 layout (demo/make_dataset.py);
2. build shards with `dask-submit preprocess/build_shards.py` on a LocalCluster;
3. pretrain CSTP (tiny backbone, all four losses) with `torchrun --nnodes 1 --nproc_per_node 2`;
4. retrieval and linear probe for the checkpoint and for `--ckpt none`, and one table.

    python demo/run.py [--out out/demo] [--per-class 20 --test-per-class 5 --frames 80] [section.key=value ...]

Trailing ``section.key=value`` items override the pretraining config (e.g. ``train.epochs=20``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def step(title: str, cmd: list[str], log: Path) -> None:
    print(f"\n== {title}\n   {' '.join(str(c) for c in cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(str(c) for c in cmd)}\n")
        f.flush()
        r = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"demo: step '{title}' failed (exit {r.returncode}); full log: {log}")
    print(f"   done in {time.perf_counter() - t0:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--per-class", type=int, default=20, help="videos per class to generate")
    p.add_argument("--test-per-class", type=int, default=5, help="of which in each split's test list")
    p.add_argument("--frames", type=int, default=80, help="frames per generated video")
    p.add_argument("overrides", nargs="*", help="pretraining config overrides, section.key=value")
    args = p.parse_args(argv)
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "demo.log"
    log.write_text("")
    data, shards, run, ev = out / "data", out / "shards", out / "run", out / "eval"
    t0 = time.perf_counter()
    from train.config import load_config

    try:
        cfg = load_config(str(ROOT / args.config), [f"data.shards={shards}", *args.overrides])
    except ValueError as exc:
        p.error(str(exc))
    m, d = cfg["model"], cfg["data"]
    eval_args = ["--shards", shards, "--clip-len", d["clip_len"], "--crop", 64, "--clips", 10, "--no-progress"]

    # Generated data is reused when it was made with the same parameters; the shards go with it.
    # A run's own outputs never are: an old checkpoint would be taken for the new one.
    params = {"per_class": args.per_class, "test_per_class": args.test_per_class, "frames": args.frames}
    stamp = data / "params.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(shards, ignore_errors=True)
    for old in (run, ev):
        shutil.rmtree(old, ignore_errors=True)
    if not stamp.is_file():
        step("1/4 generate the dataset", [sys.executable, "demo/make_dataset.py", "--out", data, "--per-class",
                                          args.per_class, "--test-per-class", args.test_per_class,
                                          "--frames", args.frames], log)
        stamp.write_text(json.dumps(params))
    step("2/4 build shards on a Dask LocalCluster",
         [BIN / "dask-submit", "preprocess/build_shards.py", "--dataset", "ucf101", "--videos", data / "videos",
          "--annotations", data / "lists", "--out", shards, "--size", "64x86", "--videos-per-shard", "8",
          "--workers", "2", "--no-progress"], log)
    step("3/4 pretrain CSTP with torchrun (1 node, 2 processes)",
         [BIN / "torchrun", "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
          "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "train/pretrain.py", "--config", args.config,
          f"data.shards={shards}", *args.overrides, "--out", run], log)
    ckpt = sorted(run.glob("ckpt-*.pt"))[-1]
    rows = {}
    for name, ck in (("random init", "none"), ("CSTP", ckpt)):
        tag = "random" if ck == "none" else "cstp"
        base = ["--ckpt", ck, "--backbone", m["backbone"], "--width", m["width"], "--out", ev / tag, *eval_args]
        step(f"4/4 evaluate {name}: retrieval", [sys.executable, "eval/retrieval.py", *base], log)
        step(f"4/4 evaluate {name}: linear probe",
             [sys.executable, "eval/linear_probe.py", *base, "--cache", ev / "cache"], log)
        r = json.loads((ev / tag / "retrieval.json").read_text())
        lp = json.loads((ev / tag / "linear_probe.json").read_text())["splits"][0]
        rows[name] = {"R@1": r["R@1"], "R@5": r["R@5"], "R@10": r["R@10"], "top-1": lp["top1"]}
    print(f"\nCSTP demo: {r['queries']} test videos against {r['gallery']} train videos, "
          f"{len(json.loads((shards / 'index.zarr' / 'zarr.json').read_text())['attributes']['classes'])} classes "
          f"(UCF-101 layout, split 1)\n")
    print(f"{'model':12s} {'R@1':>6s} {'R@5':>6s} {'R@10':>6s} {'top-1':>6s}   (%)")
    for name, v in rows.items():
        print(f"{name:12s} " + " ".join(f"{100 * v[k]:6.1f}" for k in ("R@1", "R@5", "R@10", "top-1")))
    won = rows["CSTP"]["R@1"] > rows["random init"]["R@1"]
    print(f"CSTP {'beats' if won else 'does not beat'} random initialisation on R@1 in this run.")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(f"\nfigures: {ev / 'cstp' / 'retrieval.json'}, {ev / 'cstp' / 'linear_probe.json'}, "
          f"{ev / 'random'}/...; retrieval figure: {ev / 'cstp' / 'retrieval.png'}")
    print(f"checkpoint: {ckpt}; log: {log}; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
