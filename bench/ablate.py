"""Does STOR learn? Pretrain the same tiny model (configs/tiny_cpu.yaml) on the real UCF-101 clips in
../shared/data with (a) the full scheme, (b) the contrastive term only, (c) STOR only, then measure
each pretext head's accuracy on fresh clip pairs (another sampling seed) against chance, next to
random initialisation.

    python bench/ablate.py [--steps 30] [--pairs 64] [--shards DIR]

Retrieval is not measured: split 1 of these 11 clips has two train videos (both SoccerJuggling) and
no test video of that class, so R@k is 0 for every model. Heads that are off in a variant are
reported as "-". The held-out pairs come from the same 11 videos the model was pretrained on.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from train.pretext import TASKS  # noqa: E402
from preprocess.build_shards import main as build  # noqa: E402
from train.augment import augment_pair  # noqa: E402
from train.run_start import make_loader  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.config import config_from_dict, load_config  # noqa: E402
from train.model import CSTPModel  # noqa: E402

VARIANTS = {"full scheme": [], "contrastive only": [f"loss.{k}=0" for k in TASKS],
            "STOR only": [f"loss.{k}=0" for k in ("contrastive", "rate", "rotation")]}
# train.epochs high so that --steps, not tiny_cpu's 2 epochs of 11 clips, sets the length
COMMON = ["data.split=all", "data.batch_size=4", "train.tensorboard=false", "train.ckpt_every=100000",
          "train.epochs=100000"]


def build_shards(out: Path) -> Path:
    data = ROOT.parent / "shared" / "data"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(data / "videos/ucf101/UCF-101"), "--annotations",
                    str(data / "annotations/ucf101"), "--out", str(out), "--videos-per-shard", "1", "--workers", "2",
                    "--no-progress"])
    if rc:
        raise SystemExit(f"building shards of {data} failed ({rc})")
    return out


@torch.no_grad()
def head_accuracy(model, cfg, pairs: int) -> dict:
    """Each enabled head's accuracy on ``pairs`` fresh pairs (sampling seed 12345), eval mode."""
    fresh = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=12345),
                                data=dataclasses.replace(cfg.data, num_workers=0))
    model.eval()
    hits: dict[str, list[float]] = {k: [] for k in TASKS}
    seen, loader = 0, make_loader(fresh, 0, 1)
    while seen < pairs:             # each pass over the loader is a new epoch: new pairs
        for batch in loader:
            x1, x2 = augment_pair(batch, cfg.augment, torch.Generator().manual_seed(seen), cfg.data.pair.rotations)
            h1, h2 = model.backbone(x1), model.backbone(x2)
            _, accs = model.heads(h1, h2, batch)
            for k, v in accs.items():
                hits[k].append(float(v))
            seen += len(batch["rate"])
            if seen >= pairs:
                break
    return {k: sum(v) / len(v) for k, v in hits.items() if v}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="pretraining steps per variant")
    p.add_argument("--pairs", type=int, default=64, help="held-out pairs per accuracy")
    p.add_argument("--shards", help="shard set of the real clips (default: built into a temporary folder)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cstp_ablate_"))
    shards = args.shards or str(build_shards(tmp / "shards"))
    tiny = str(ROOT / "configs/tiny_cpu.yaml")
    base = load_config(tiny, [f"data.shards={shards}", *COMMON])
    chance = {k: t.chance(base) for k, t in TASKS.items()}
    torch.manual_seed(0)
    rows = {"random init": head_accuracy(CSTPModel(base), base, args.pairs)}
    for name, extra in VARIANTS.items():
        out = tmp / name.replace(" ", "_")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "train/pretrain.py", "--config", tiny, f"data.shards={shards}", *COMMON,
                            f"train.max_steps={args.steps}", *extra, "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"pretraining '{name}' failed: {r.stderr.strip().splitlines()[-1:]}")
        ck = load_checkpoint(sorted(out.glob("ckpt-*.pt"))[-1])
        if ck["step"] != args.steps:
            raise SystemExit(f"'{name}' stopped at step {ck['step']}, not {args.steps}")
        cfg = config_from_dict(ck["config"])
        model = CSTPModel(cfg)
        model.load_state_dict(ck["model"])
        rows[name] = head_accuracy(model, cfg, args.pairs)
        print(f"pretrained '{name}': {args.steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\nheld-out pretext accuracy (%), {args.pairs} fresh pairs of the 11 real UCF-101 clips, "
          f"tiny_cpu model, {args.steps} steps of batch 4")
    width = max(11, *(len(h) + 1 for h in TASKS))
    print(f"{'model':18s}" + "".join(f"{h:>{width}s}" for h in TASKS))
    print(f"{'chance':18s}" + "".join(f"{100 * chance[h]:{width}.1f}" for h in TASKS))
    for name, accs in rows.items():
        print(f"{name:18s}" + "".join(f"{100 * accs[h]:{width}.1f}" if h in accs else f"{'-':>{width}s}" for h in TASKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
