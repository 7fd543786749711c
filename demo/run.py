"""The whole pipeline on an embedded default, in one command (`make demo`):

1. generate a small labelled video dataset in UCF-101 layout (demo/make_dataset.py; ``--content
   textured`` draws the textured videos, on which the overlap heads have something to see);
2. build shards with `dask-submit preprocess/build_shards.py` on a LocalCluster;
3. pretrain CSTP (tiny backbone, all four losses) with `torchrun --nnodes 1 --nproc_per_node 2`;
4. retrieval and linear probe for the checkpoint and for `--ckpt none`, one table, and plots.

    python demo/run.py [--out out/demo] [--per-class 20 --test-per-class 5 --frames 80] [--content textured]
                       [section.key=value ...]

Trailing ``section.key=value`` items override the pretraining config (e.g. ``train.epochs=20``).
The console shows one live line per stage; every command's whole output goes to OUT/demo.log.
"""
from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:            # demo/ is no installed package: `make demo` runs this file by path
    sys.path.insert(0, str(ROOT))

from demo.progress import clock, run_stage  # noqa: E402
from eval.plots import main as report  # noqa: E402
from shards.errors import RunFailed, command, parser  # noqa: E402
from shards.index import read_index  # noqa: E402
from train.config import load_config  # noqa: E402

BIN = Path(sys.executable).parent
METRICS = ("R@1", "R@5", "R@10", "top-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_parser():
    p = parser("demo/run.py", __doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo", help="folder for everything the demo writes")
    p.add_argument("--config", default="configs/demo.yaml", help="pretraining config")
    p.add_argument("--per-class", type=int, default=20, help="videos per class to generate")
    p.add_argument("--test-per-class", type=int, default=5, help="of which in each split's test list")
    p.add_argument("--frames", type=int, default=80, help="frames per generated video")
    p.add_argument("--content", choices=("plain", "textured"), default="textured",
                   help="the videos' background: a panned, zoomed textured scene (on which the overlap heads have "
                        "something to see), or flat grey")
    p.add_argument("--data-seed", type=int, default=0,
                   help="the generator's seed (the demo's settings were chosen on seed 1's videos, not on seed 0's)")
    p.add_argument("overrides", nargs="*", help="pretraining config overrides, section.key=value")
    return p


def clear_old(args, data: Path, shards: Path, outputs) -> tuple[dict, Path]:
    """Generated data is reused when it was made with the same parameters; the shards go with it.
    A run's own ``outputs`` never are: an old checkpoint would be taken for the new one."""
    params = {"per_class": args.per_class, "test_per_class": args.test_per_class, "frames": args.frames,
              "content": args.content, "seed": args.data_seed}
    stamp = data / "params.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(shards, ignore_errors=True)
    for old in outputs:
        shutil.rmtree(old, ignore_errors=True)
    return params, stamp


def evaluate(stage, ckpts: dict, ev: Path, model_args: list) -> tuple[dict, dict]:
    """Retrieval and the linear probe of each named checkpoint: the table's rows, and the last
    retrieval result (its gallery and query counts)."""
    rows = {}
    for name, ck in ckpts.items():
        tag = "random" if ck == "none" else "cstp"
        base = ["--ckpt", ck, "--out", ev / tag, *model_args]
        stage(f"4/4 {name}: retrieval", [sys.executable, "eval/retrieval.py", *base])
        stage(f"4/4 {name}: linear probe", [sys.executable, "eval/linear_probe.py", "--protocol", "full-batch", *base,
                                             "--cache", ev / "cache"])
        r = json.loads((ev / tag / "retrieval.json").read_text())
        lp = json.loads((ev / tag / "linear_probe.json").read_text())["splits"][0]
        # fractions to 3 places: the 0.1% the table prints
        rows[name] = {k: round(v, 3) for k, v in {"R@1": r["R@1"], "R@5": r["R@5"], "R@10": r["R@10"],
                                                   "top-1": lp["top1"]}.items()}
    return rows, r


def print_table(rows: dict, r: dict, n_classes: int) -> None:
    print(f"\nCSTP demo: {r['queries']} test videos against {r['gallery']} train videos, "
          f"{n_classes} classes (UCF-101 layout, split 1)\n")
    print(f"{'model':12s} " + " ".join(f"{k:>6s}" for k in METRICS) + "   (%)")
    for name, v in rows.items():
        print(f"{name:12s} " + " ".join(f"{100 * v[k]:6.1f}" for k in METRICS))
    capped = [k for k in METRICS if k in r.get("capped", {})]
    if capped:
        print(f"({', '.join(capped)} count the whole {r['gallery']}-video gallery)")
    won = rows["CSTP"]["R@1"] > rows["random init"]["R@1"]
    print(f"CSTP {'beats' if won else 'does not beat'} random initialisation on R@1 in this run.\n")


@command("demo/run.py")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "demo.log"
    log.write_text("")
    data, shards, run, ev, plots = out / "data", out / "shards", out / "run", out / "eval", out / "plots"
    t0 = time.perf_counter()
    cfg = load_config(str(ROOT / args.config), [f"data.shards={shards}", *args.overrides])
    m, d = cfg.model, cfg.data
    eval_args = ["--shards", shards, "--clip-len", d.clip_len, "--crop", 64, "--clips", 10]

    def stage(title, cmd):
        try:
            run_stage(title, cmd, log)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            raise RunFailed(f"step '{title}' failed; full log: {log}") from None

    params, stamp = clear_old(args, data, shards, (run, ev, plots))
    print(f"CSTP demo: every command's output goes to {log}")
    if not stamp.is_file():
        stage("1/4 generate the dataset", [sys.executable, "demo/make_dataset.py", "--out", data, "--per-class",
                                           args.per_class, "--test-per-class", args.test_per_class, "--frames", args.frames,
                                           "--content", args.content, "--seed", args.data_seed])
        stamp.write_text(json.dumps(params))
    stage("2/4 shards on a Dask LocalCluster",
          [BIN / "dask-submit", "preprocess/build_shards.py", "--dataset", "ucf101", "--videos", data / "videos",
           "--annotations", data / "lists", "--out", shards, "--size", "64x86", "--videos-per-shard", "8", "--workers", "2"])
    stage("3/4 pretrain CSTP, torchrun 2 processes",
          [BIN / "torchrun", "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "train/pretrain.py", "--config", args.config,
           f"data.shards={shards}", *args.overrides, "--out", run])
    ckpt = sorted(run.glob("ckpt-*.pt"))[-1]
    rows, r = evaluate(stage, {"random init": "none", "CSTP": ckpt}, ev,
                       ["--backbone", m.backbone, "--width", m.width, *eval_args])
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print_table(rows, r, len(read_index(shards).classes))
    if report([str(run), "--out", str(plots), "--summary", str(out / "summary.json")]) != 0:
        raise RunFailed(f"the plots of {run} could not be written")
    print(f"figures: {plots}/ (training curves, the table as bars); retrieval: "
          f"{ev / 'cstp' / 'retrieval.png'}, {ev / 'random' / 'retrieval.png'}")
    print(f"results: {out / 'summary.json'}, {ev}/<model>/*.json; checkpoint: {ckpt}; log: {log}")
    print(f"total {clock(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
