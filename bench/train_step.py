"""Clips per second of one CSTP training step (SimCLR + all pretext heads, forward + backward +
SGD step, augmentation included) for each backbone at 16 x 112 x 112, on the device at hand.

    python bench/train_step.py [--batch 4] [--steps 3] [--backbones r21d_10,r3d_18] [--shards DIR]

With --shards, batches come from the real loader (2 workers) and the data-wait fraction is printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402


def main() -> int:
    from shards.augment import AugmentConfig, augment
    from train.backbones import BACKBONES
    from train.config import load_config
    from train.model import CSTPModel
    from train.optim import build_optimizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=4, help="clip pairs per step")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--backbones", default=",".join(sorted(BACKBONES)))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--shards", help="shard set for a real loader (measures data wait)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'}; "
          f"{args.batch} pairs/step, 16x112x112, bf16 autocast: {device.type == 'cuda'}")
    loader = None
    if args.shards:
        from train.pretrain import make_loader

        lcfg = load_config(None, [f"data.shards={args.shards}", f"data.batch_size={args.batch}", "data.num_workers=2"])
        loader = make_loader(lcfg, 0, 1)
    for name in args.backbones.split(","):
        cfg = load_config(None, ["data.shards=x", f"model.backbone={name}", f"model.width={args.width}"])
        model = CSTPModel(cfg).to(device).train()
        opt, sched = build_optimizer(model, cfg["optim"], args.batch, 0, 1000)
        g = torch.Generator(device=device).manual_seed(0)

        def batches():
            if loader is not None:
                while True:
                    yield from loader
            while True:
                yield {"clip1": torch.randint(0, 256, (args.batch, 3, 16, 112, 112), dtype=torch.uint8),
                       "clip2": torch.randint(0, 256, (args.batch, 3, 16, 112, 112), dtype=torch.uint8),
                       **{k: torch.randint(0, 4, (args.batch,)) for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t")}}

        it = batches()
        times, waits = [], []
        for s in range(args.steps + 1):
            t0 = time.perf_counter()
            b = next(it)
            t1 = time.perf_counter()
            x1 = augment(b["clip1"].to(device), AugmentConfig(), g)
            x2 = augment(b["clip2"].to(device), AugmentConfig(), g)
            labels = {k: b[k].to(device) for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t")}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, _, _ = model(x1, x2, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if s > 0:                       # the first step pays for allocation and kernel choice
                times.append(t2 - t0)
                waits.append(t1 - t0)
        clips = 2 * args.batch * len(times) / sum(times)
        extra = f", data wait {sum(waits) / sum(times):.0%}" if loader is not None else ""
        params = sum(p.numel() for p in model.method.backbone.parameters()) / 1e6
        print(f"  {name:12s} {params:6.1f} M params: {clips:8.1f} clips/s{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
