"""Does STOR learn? Pretrain the tiny model on generated videos whose overlap is visible (the demo's
classes over a panned, zoomed textured scene: demo/make_dataset.py --content textured), STOR only and
the full scheme (at the paper's loss weights, and with the rotation term at 0.25), then score each pretext head on fresh pairs of HELD-OUT videos (split 1's test part,
never trained on; another sampling seed) against chance, with a 95% Wilson interval.

    python bench/stor_sanity.py [--steps N] [--variants stor_only,full,full_rot025] [--pairs 512]
                                [--json out.json] [section.key=value ...]

Trailing overrides go to every variant's pretraining (configs/tiny_cpu.yaml plus the bench's own
settings, COMMON and VARIANTS below: not the paper's, chosen so that a CPU run of a few minutes can
show learning; README "Does STOR learn?"). Runs on the CPU; the wall time of each stage is in the
output and the JSON. The variants pretrain side by side, each with its share of the cores
(one thread each on 2 cores; OMP_NUM_THREADS, when set, wins).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from train.threads import usable_cores  # noqa: E402  (first: the train package sets OpenMP's wait policy before torch loads)
import torch  # noqa: E402
from preprocess.build_shards import main as build  # noqa: E402
from shards.format import SPLIT_TEST  # noqa: E402
from shards.stream import PairLoader  # noqa: E402
from train.run_start import make_loader  # noqa: E402
from train.augment import augment_pair  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.config import config_from_dict, to_dict  # noqa: E402
from train.model import CSTPModel  # noqa: E402
from train.pretext import TASKS  # noqa: E402

HEADS = ("overlap_spatial", "overlap_temporal", "rate", "rotation")     # train.pretext task names
# Bench-only settings (not the paper's; README "Does STOR learn?" says why): STOR-only turns off what
# is not STOR; the full scheme keeps the paper's rates and rotations for its per-clip heads, once with
# the paper's loss weights ("full") and once with the rotation term at 0.25 ("full_rot025"): at equal
# weights the rotation term, which the videos' sky-to-ground gradient makes easy, is learnt first and
# the playback-rate and temporal-overlap heads never leave chance (not in 1,200 steps, not at twice
# the width); at 0.25 all four heads learn.
VARIANTS = {"stor_only": ["loss.contrastive=0", "loss.rate=0", "loss.rotation=0", "data.rates=[1]", "data.rotations=[0]"],
            "full": [],
            "full_rot025": ["loss.rotation=0.25"]}
# Steps each variant takes by default: STOR-only at 300 splits what it learns between its two heads
# (36 / 53%, or 44 / 46%), at 600 both pass 50%; with the rotation term at 0.25 the temporal head
# gets going after ~400 steps and 600 are not enough (38 / 29%), 1,200 are. A full-scheme step costs
# ~1.7x a STOR-only one (the README gives the wall times measured).
STEPS = {"stor_only": 600, "full": 600, "full_rot025": 1200}
# The variant whose heads the JSON's top-level "heads" repeats: the first of these that ran.
HEADLINE = ("full_rot025", "full")
# On top of configs/tiny_cpu.yaml, for every variant: 8-frame clips at 32 px from 64x86 shards, batches of
# 16 of split 1's train part, --steps (not epochs) sets the length; AdamW at 2e-3 (0.032 per 256) instead of
# SGD; no colour/blur/small-rotation transform and no flip (each clip's own draw hides what two crops share);
# and the overlap heads fed [h1, h2, |h1-h2|, h1*h2] (model.pair_input=compare) instead of the paper's
# concatenation, with which the heads stayed at chance in runs of this length.
COMMON = ["data.split=1", "data.batch_size=16", "data.out_size=32", "train.tensorboard=false",
          "train.ckpt_every=100000", "train.epochs=100000", "train.log_every=25",
          "optim.name=adamw", "optim.lr=0.032", "optim.weight_decay=0.0001",
          "augment.p_base=0", "augment.p_flip=0", "model.pair_input=compare"]


def wilson(hits: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def make_data(out: Path, per_class: int, test_per_class: int, frames: int) -> Path:
    r = subprocess.run([sys.executable, "demo/make_dataset.py", "--out", str(out / "data"), "--per-class", str(per_class),
                        "--test-per-class", str(test_per_class), "--frames", str(frames), "--content", "textured"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"generating the videos failed: {r.stderr.strip().splitlines()[-1:]}")
    with contextlib.redirect_stdout(io.StringIO()):
        rc = build(["--size", "64x86", "--dataset", "ucf101", "--videos", str(out / "data/videos"), "--annotations",
                    str(out / "data/lists"), "--out", str(out / "shards"), "--videos-per-shard", "8", "--workers", "2",
                    "--no-progress"])
    if rc:
        raise SystemExit(f"building shards failed ({rc})")
    return out / "shards"


def held_out_loader(cfg, seed: int):
    """The pretraining loader's pairs, on split 1's test videos and another sampling seed."""
    train = make_loader(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=0)), 0, 1).dataset.cfg
    return PairLoader(dataclasses.replace(train, role=SPLIT_TEST, seed=seed), num_workers=0, rank=0, world_size=1)


@torch.no_grad()
def head_accuracy(model, cfg, pairs: int, seed: int = 12345) -> dict:
    """Hits and trials of each enabled head on ``pairs`` held-out pairs, eval mode (running BN statistics)."""
    model.eval()
    aug, rots = cfg.augment, cfg.data.pair.rotations
    hits: dict[str, list[int]] = {}
    seen, loader = 0, held_out_loader(cfg, seed)
    while seen < pairs:             # each pass over the loader is a new epoch: new pairs
        for batch in loader:
            x1, x2 = augment_pair(batch, aug, torch.Generator().manual_seed(seed + seen), rotations=rots)
            _, accs = model.heads(model.backbone(x1), model.backbone(x2), batch)
            n = len(batch["rate"])
            for k, v in accs.items():
                trials = 2 * n if TASKS[k].per_clip else n        # per-clip heads score both clips
                h = hits.setdefault(k, [0, 0])
                h[0] += round(float(v) * trials)
                h[1] += trials
            seen += n
            if seen >= pairs:
                break
    return hits


def report(hits: dict, cfg) -> dict:
    out = {}
    for name in HEADS:
        if name in hits:
            h, n = hits[name]
            out[name] = {"accuracy": h / n, "chance": TASKS[name].chance(cfg), "ci95": list(wilson(h, n)), "n": n}
        else:
            out[name] = None        # the head is off in this variant
    return out


def start_pretraining(name: str, shards: Path, out: Path, steps: int, overrides: list[str], threads: int):
    """The variant's pretraining as a child process with ``threads`` intra-op threads (stdout and stderr
    to OUT/NAME.log), started now."""
    (out / name).mkdir(parents=True, exist_ok=True)
    log = open(out / f"{name}.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "train/pretrain.py", "--config", "configs/tiny_cpu.yaml", f"data.shards={shards}",
                             *COMMON, f"train.max_steps={steps}", *VARIANTS[name], *overrides, "--out", str(out / name),
                             "--overwrite"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def finish_pretraining(name: str, proc, out: Path) -> dict:
    """Wait for the variant's child; its last checkpoint as a model."""
    if proc.wait():
        lines = (out / f"{name}.log").read_text().strip().splitlines()
        raise SystemExit(f"pretraining '{name}' failed: {lines[-1:]} (whole output: {out / name}.log)")
    ck = load_checkpoint(sorted((out / name).glob("ckpt-*.pt"))[-1])
    cfg = config_from_dict(ck["config"])
    model = CSTPModel(cfg)
    model.load_state_dict(ck["model"])
    return {"model": model, "config": cfg, "step": ck["step"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, help=f"pretraining steps of every variant (default: {STEPS})")
    p.add_argument("--pairs", type=int, default=512, help="held-out pairs per accuracy")
    p.add_argument("--per-class", type=int, default=8, help="generated videos per class (8 classes)")
    p.add_argument("--test-per-class", type=int, default=3, help="of which held out (split 1's test list)")
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {sorted(VARIANTS)}")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--work", help="folder for data and runs (default: a temporary one)")
    p.add_argument("overrides", nargs="*", help="pretraining overrides for every variant, section.key=value")
    args = p.parse_args(argv)
    names = args.variants.split(",")
    if any(n not in VARIANTS for n in names):
        p.error(f"--variants: valid names are {sorted(VARIANTS)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="cstp_stor_sanity_"))
    t0 = time.perf_counter()
    shards = work / "shards" if (work / "shards" / "index.zarr").exists() else make_data(work, args.per_class,
                                                                                          args.test_per_class, args.frames)
    result = {"data": {"content": "textured", "per_class": args.per_class, "test_per_class": args.test_per_class,
                       "frames": args.frames, "shards": "64x86", "data_wall_s": round(time.perf_counter() - t0, 1)},
              "steps": {}, "pairs": args.pairs, "overrides": COMMON + args.overrides, "variants": {}}
    print(f"data: {result['data']['data_wall_s']} s", flush=True)
    steps = {n: args.steps or STEPS[n] for n in names}
    result["steps"] = steps
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, usable_cores() // len(names))
    t1 = time.perf_counter()
    procs = {n: start_pretraining(n, shards, work / "runs", steps[n], args.overrides, threads) for n in names}
    walls: dict[str, float] = {}
    while len(walls) < len(procs):          # side by side: note when each ends
        for n, proc in procs.items():
            if n not in walls and proc.poll() is not None:
                walls[n] = time.perf_counter() - t1
        time.sleep(0.5)
    for name in names:
        run = finish_pretraining(name, procs[name], work / "runs")
        if run["step"] != steps[name]:
            raise SystemExit(f"'{name}' stopped at step {run['step']}, not {steps[name]}")
        t2 = time.perf_counter()
        heads = report(head_accuracy(run["model"], run["config"], args.pairs), run["config"])
        result["variants"][name] = {"heads": heads, "steps": steps[name], "train_wall_s": round(walls[name], 1),
                                    "eval_wall_s": round(time.perf_counter() - t2, 1), "config": to_dict(run["config"])}
        print(f"\n{name}: {steps[name]} steps in {walls[name]:.0f} s ({threads} thread{'s' if threads > 1 else ''}, "
              f"beside {len(names) - 1} other variant{'s' if len(names) != 2 else ''}); held-out accuracy on "
              f"{args.pairs} pairs of {args.test_per_class * 8} unseen videos (chance, 95% interval)", flush=True)
        for h, v in heads.items():
            print(f"  {h:17s} " + ("off" if v is None else f"{100 * v['accuracy']:5.1f}%  (chance {100 * v['chance']:.1f}%, "
                                                          f"{100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}%)"), flush=True)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    headline = next((n for n in HEADLINE if n in result["variants"]), None)
    if headline:
        result["heads"], result["heads_from"] = result["variants"][headline]["heads"], headline
    print(f"\ntotal {result['wall_s']:.0f} s (work folder {work})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
