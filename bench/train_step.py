"""Clips per second of one CSTP training step, pretrain.py's own step (augmentation, the default
config's BYOL and every pretext head, backward, the non-finite check, SGD), per backbone, eager vs
channels_last_3d vs torch.compile, on the device at hand (CUDA if there is one).

    python bench/train_step.py [--batch 4] [--steps 5] [--frames 16] [--size 112] [--backbones r21d_10,r3d_18]
    python bench/train_step.py --batch 2 --steps 3 --frames 8 --size 64 --width 0.25 --backbones r21d_10   # CPU-sized

Batches are generated on the device, so the figures are the step's alone; each timing runs between
synchronised points after --warmup steps (which include compilation). With --shards, batches come
from the real loader instead and the data-wait fraction is printed too.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402,F401  before torch: OpenMP's threads wait asleep (train/threads.py, passive_wait)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from shards.errors import parser  # noqa: E402
from shards.pairs import geometry  # noqa: E402
from shards.sampling import sample_pair  # noqa: E402
from train.accel import maybe_compile, memory_format, setup_device  # noqa: E402
from train.backbones import BACKBONES  # noqa: E402
from train.config import load_config  # noqa: E402
from train.loop import Trainer  # noqa: E402
from train.model import CSTPModel  # noqa: E402
from train.optim import build_optimizer  # noqa: E402
from train.runlog import RunLog  # noqa: E402
from train.threads import set_threads  # noqa: E402
from train.run_start import make_loader  # noqa: E402

VARIANTS = {                      # name: (channels_last, compile)
    "eager": (False, False),
    "channels_last": (True, False),
    "compile": (True, True),      # what pretrain.py does on CUDA by default
}


def device_batches(cfg, batch: int, device: torch.device):
    """Endless batches of random uint8 clips made on the device, with the geometry of pairs the
    sampler draws (from a 300-frame 128x171 video), so every registered pretext task has its labels."""
    d = cfg.data
    g = torch.Generator(device=device).manual_seed(0)
    rng = np.random.default_rng(0)
    shape = (batch, 3, d.clip_len, d.out_size, d.out_size)
    while True:
        pairs = geometry([sample_pair(300, 128, 171, d.pair, rng) for _ in range(batch)])
        yield {"clip1": torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=g),
               "clip2": torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=g),
               **{k: v.to(device) for k, v in pairs.items()}}


def loader_batches(cfg):
    """Endless batches from the real loader (epoch after epoch)."""
    loader = make_loader(cfg, 0, 1)
    while True:
        yield from loader


def measure(cfg, device: torch.device, variant: str, batches, warmup: int, steps: int) -> tuple[float, float]:
    """(clips/s, data-wait fraction) of ``steps`` training steps after ``warmup`` of them."""
    channels_last, compiled = VARIANTS[variant]
    torch.manual_seed(0)
    model = CSTPModel(cfg)
    fmt = memory_format(channels_last)
    model.to(device, memory_format=fmt)
    opt, sched = build_optimizer(model, cfg.optim, cfg.data.batch_size, 0, 10 ** 6)
    net = maybe_compile(model, compiled, lambda m: print(f"    {m}"))
    t = Trainer(cfg=cfg, model=model, net=net, opt=opt, sched=sched, loader=None, device=device, fmt=fmt, rank=0,
                out=Path("."), log=RunLog(Path("."), start_step=0, log_every=1, clips_per_step=0, tensorboard=False,
                                          enabled=False), total=10 ** 6)
    model.train()
    for _ in range(warmup):
        t.train_step(next(batches))
    wait = 0.0
    start = time.perf_counter()          # the warm-up's last step ended with the step's sync
    for _ in range(steps):
        t0 = time.perf_counter()
        b = next(batches)
        wait += time.perf_counter() - t0
        t.train_step(b)                  # ends with the non-finite check, a device sync
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return 2 * cfg.data.batch_size * steps / elapsed, wait / elapsed


def main(argv=None) -> int:
    p = parser("bench/train_step.py", __doc__)
    p.add_argument("--batch", type=int, default=4, help="clip pairs per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocation, autotuning, compilation)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--size", type=int, default=112, help="clip height and width")
    p.add_argument("--backbones", default=",".join(sorted(BACKBONES)), help="comma-separated backbone names")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--shards", help="shard set for the real loader (2 workers) instead of device batches")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setup_device(device)
    threads = set_threads(2 if args.shards else 0)
    what = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    what += f", {threads}"
    print(f"device: {what}; {args.batch} pairs/step, {args.frames}x{args.size}x{args.size}, "
          f"bf16 autocast: {device.type == 'cuda'}; {args.warmup} warm-up + {args.steps} timed steps")
    for name in args.backbones.split(","):
        cfg = load_config(None, [f"data.shards={args.shards or 'x'}", f"model.backbone={name}",
                                 f"model.width={args.width}", f"data.batch_size={args.batch}",
                                 f"data.clip_len={args.frames}", f"data.out_size={args.size}", "data.num_workers=2",
                                 "data.split=all"])
        params = sum(x.numel() for x in CSTPModel(cfg).backbone.parameters()) / 1e6
        base = None
        for variant in args.variants.split(","):
            if args.shards:
                batches = loader_batches(cfg)
            else:
                batches = device_batches(cfg, args.batch, device)
            rate, wait = measure(cfg, device, variant, batches, args.warmup, args.steps)
            base = base or rate
            extra = f", data wait {wait:.0%}" if args.shards else ""
            print(f"  {name:12s} {params:6.1f} M params  {variant:14s} {rate:8.1f} clips/s  "
                  f"x{rate / base:.2f} vs {args.variants.split(',')[0]}{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
