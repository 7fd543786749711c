"""CSTP self-supervised pretraining, under torchrun or as one plain process.

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        train/pretrain.py --config configs/cstp_r21d_ucf101.yaml data.shards=/shards/ucf101
    python train/pretrain.py --config configs/tiny_cpu.yaml data.shards=out/shards/ucf101

Overrides are section.key=value (YAML values). A run folder that holds checkpoints is continued
with --resume auto (the newest valid checkpoint; a corrupt one is skipped with a warning), or
started again with --overwrite.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not train/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from shards.errors import CstpError, command, parser, plural  # noqa: E402

# torch and the modules that import it load in the functions that use them, after the arguments are
# parsed: `cstp-pretrain --help` answers in well under a second instead of after torch's import


def build_parser():
    p = parser("pretrain", __doc__)
    p.add_argument("--config", help="YAML config (see configs/); without it the built-in defaults")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    p.add_argument("--out", help="run folder (overrides train.out)")
    p.add_argument("--resume", default="none",
                   help="'auto' (newest valid checkpoint in the run folder), 'none' (a new run), or a checkpoint path")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit, touching no data")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a folder that holds checkpoints, deleting its checkpoints and logs")
    return p


def make_loader(cfg, rank: int, world: int):
    from shards.stream import PairLoader, StreamConfig

    d = cfg.data
    split = None if str(d.split) == "all" else str(d.split)
    sc = StreamConfig(d.shards, batch_size=d.batch_size, split=split,
                      seed=cfg.train.seed, shuffle_buffer=d.shuffle_buffer, out_size=(d.out_size, d.out_size),
                      pair=d.pair, skip_errors=d.skip_errors, max_skip_fraction=d.max_skip_fraction,
                      io_timeout=d.io_timeout, io_retries=d.io_retries)
    return PairLoader(sc, num_workers=d.num_workers, rank=rank, world_size=world)


def split_phrase(split) -> str:
    if str(split) == "all":
        return "every video of the shard set (data.split=all; data.split=1 trains on split 1's train part)"
    return f"the train part of split {split} (data.split={split}; data.split=all trains on every video)"


def start_summary(cfg, videos: int, steps_per_epoch: int, total: int, start: int, world: int,
                  device: torch.device, compiled: bool, channels_last: bool) -> str:
    batch = cfg.data.batch_size
    precision = "bf16 autocast" if device.type == "cuda" and cfg.train.bf16 else "fp32"
    return (f"training on {split_phrase(cfg.data.split)}: {plural(videos, 'video')}, "
            f"{plural(steps_per_epoch * batch * world, 'pair')} per epoch; {plural(steps_per_epoch, 'step')} per epoch, "
            f"{total} in total{f' (from step {start})' if start else ''}; world size {world}, "
            f"global batch {batch * world} ({world} x {batch}); device {device}, {precision}, "
            f"compile {'on' if compiled else 'off'}, channels_last {'on' if channels_last else 'off'}")


def say(msg: str, rank: int) -> None:
    if rank == 0:
        print(f"pretrain: {msg}", file=sys.stderr, flush=True)


def resume_from(args, out: Path, rank: int) -> tuple[Path, dict] | None:
    from train.checkpoint import find_resume, load_checkpoint

    if args.resume == "none":
        return None
    if args.resume == "auto":
        found = find_resume(out, on_skip=lambda m: say(f"warning: {m}", rank))
        if found is None:
            say(f"no usable checkpoint in {out}; starting from step 0", rank)
        return found
    return Path(args.resume), load_checkpoint(args.resume)


def train(args) -> int:
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from train import ddp as D
    from train.accel import maybe_compile, memory_format, setup_device, wanted
    from train.config import dump_yaml, load_config, require_pretraining
    from train.loop import Trainer
    from train.model import CSTPModel
    from train.optim import build_optimizer
    from train.run_folder import prepare_run_folder
    from train.runlog import RunLog
    from train.sync_bn import convert_sync_bn

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg))
        return 0
    require_pretraining(cfg, args.config)
    if args.out:
        cfg.train.out = args.out
    tcfg = cfg.train
    out = Path(tcfg.out)
    env_rank = int(os.environ.get("RANK", 0))          # before the process group: torchrun's variable
    prepare_run_folder(out, args.resume, args.overwrite, env_rank == 0, lambda m: say(m, env_rank))

    rank, world, _, device = D.init_from_env()
    setup_device(device)
    torch.manual_seed(tcfg.seed)
    loader = make_loader(cfg, rank, world)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * tcfg.epochs
    if tcfg.max_steps:
        total = min(total, int(tcfg.max_steps))
    global_batch = cfg.data.batch_size * world

    model = CSTPModel(cfg)
    if world > 1 and cfg.model.sync_bn:
        model = convert_sync_bn(model, device)
    channels_last = wanted(tcfg.channels_last, device)
    fmt = memory_format(channels_last)
    model.to(device, memory_format=fmt)
    opt, sched = build_optimizer(model, cfg.optim, global_batch,
                                 int(cfg.optim.warmup_epochs * steps_per_epoch), total)
    step = 0
    found = resume_from(args, out, rank)
    if found:
        path, ck = found
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        loader.load_state_dict(ck["loader"])
        torch.set_rng_state(ck["rng"]["torch"])
        step = int(ck["step"])
        if rank == 0:
            print(f"resumed from {path} at step {step} (epoch {loader.epoch}, batch {loader.delivered})", flush=True)
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    compiled = wanted(tcfg.compile, device)
    net = maybe_compile(net, compiled, lambda m: say(m, rank))

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(cfg))
    log = RunLog(out, start_step=step, log_every=tcfg.log_every, clips_per_step=2 * global_batch,
                 tensorboard=tcfg.tensorboard, enabled=rank == 0)
    summary = start_summary(cfg, loader.epoch_summary()["videos_in_split"], steps_per_epoch, total, step, world,
                            device, compiled, channels_last)
    if rank == 0:
        print(summary, flush=True)
    log.event("start", step, summary=summary, world_size=world, global_batch=global_batch, device=str(device))
    trainer = Trainer(cfg=cfg, model=model, net=net, opt=opt, sched=sched, loader=loader, device=device, fmt=fmt,
                      rank=rank, out=out, log=log, total=total, step=step)
    try:
        end = trainer.run()
    finally:
        log.close()
    if rank == 0:
        rate, wait = end["steady_clips_per_s"], end["steady_data_wait"]
        steady = (f"{rate:.1f} clips/s, data wait {wait:.0%}" if rate is not None else "n/a")
        print(f"done: {plural(trainer.step, 'step')}; steady state ({plural(end['steps_measured'], 'step')}, first "
              f"{end['steps_excluded']} excluded): {steady}; checkpoints in {out}, backbone {out / 'backbone.pt'}")
    return 0


@command("pretrain")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)   # overrides may sit between options
    from train import ddp as D

    try:
        return train(args)
    except CstpError as exc:
        if int(os.environ.get("RANK", 0)) != 0 and not getattr(exc, "rank_only", False):
            raise SystemExit(exc.exit_code) from None    # every rank met it; rank 0 reports it, once
        raise
    finally:
        D.cleanup()


if __name__ == "__main__":
    sys.exit(main())
