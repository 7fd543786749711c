"""The pretraining run (train/pretrain.py parses the command line, then calls :func:`train`): the
config a start runs with (new, or a resume's: train/resume.py), the run folder and its lock, the
model, optimiser and loader, the training loop, and what it says at the end or when preempted."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from shards.decoders import make_decoder
from shards.errors import plural
from shards.sampling import min_frames

from train import ddp as D
from train.accel import maybe_compile, memory_format, setup_device, wanted
from train import preemption
from train.checkpoint import checkpoint_name, find_resume, load_for_resume
from train.config import config_from_dict, dump_yaml, load_config, require_pretraining, to_dict
from train.loop import Trainer
from train.model import CSTPModel
from train.optim import build_optimizer
from train.preemption import EXIT_PREEMPTED
from train.resume import ALLOWED_ON_RESUME, ResumeRefused, describe, record_line, restore, resumed_config
from train.run_folder import prepare_run_folder, run_folder_lock, write_config
from train.runlog import RunLog
from train.threads import set_threads
from train.sync_bn import convert_sync_bn
from train.run_start import left_out_phrase, make_loader, say, start_summary


def find_checkpoint(args, out: Path, rank: int) -> tuple[Path, dict] | None:
    if args.resume == "none":
        return None
    if args.resume == "auto":
        found = find_resume(out, on_skip=lambda m: say(f"warning: {m}", rank))
        if found is None:
            say(f"no usable checkpoint in {out}; starting from step 0", rank)
        return found
    return Path(args.resume), load_for_resume(args.resume)


def train(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg))
        return 0
    make_decoder(cfg.data.decode)        # data.decode=gpu without CUDA: refused before the run folder
    if args.out:
        cfg.train.out = args.out
    out = Path(cfg.train.out)
    timeout = cfg.train.collective_timeout
    rank, world, _, device = D.init_from_env(timeout)
    try:
        if args.resume == "none" and D.any_rank_restarted(device):
            # torchrun restarted the group (--max-restarts) after a rank failed: continue the run
            say("torchrun restarted the workers: resuming as with --resume auto", rank)
            args.resume = "auto"
        with preemption.watch() as preempt, run_folder_lock(out, rank == 0, device):
            prepare_run_folder(out, args.resume, args.overwrite, rank == 0, lambda m: say(m, rank))
            return run(args, cfg, out, rank, world, device, preempt)
    except Exception as exc:
        lost = D.peer_lost(exc, timeout) if world > 1 else None
        if lost is None:
            raise
        raise lost from None


def resolve(args, cfg, out: Path, rank: int, world: int) -> tuple[object, tuple | None]:
    """The config this start runs with: the command line's for a new run, the checkpoint's for a resume
    (train/resume.py); and (checkpoint path, checkpoint, Resumed) when resuming."""
    found = find_checkpoint(args, out, rank)
    if not found:
        return cfg, None
    path, ck = found
    resumed = resumed_config(ck, path.name, to_dict(cfg), args.config, args.overrides, args.allow_change, world)
    run_cfg = config_from_dict(resumed.config, f"{path.name}: ")
    if run_cfg.train.out != str(out):          # the run folder was moved: allowed, recorded
        resumed.changes["train.out"] = (run_cfg.train.out, str(out))
        run_cfg.train.out = str(out)
    for note in resumed.notes:
        say(note, rank)
    return run_cfg, (path, ck, resumed)


def nothing_left(path: Path, step: int, total: int, cfg) -> int:
    """A resume whose checkpoint is already at (or past) the run's end: said as it is."""
    t = cfg.train
    end = f"train.epochs={t.epochs}" + (f", train.max_steps={t.max_steps}" if t.max_steps else "")
    if step > total:
        raise ResumeRefused(f"{path.name} is at step {step}, past this run's end at step {total} ({end})")
    print(f"nothing to train: the run finished at step {step} ({end}; {path.name}); raise train.epochs or "
          "train.max_steps to train longer", flush=True)
    return 0


def run(args, cfg, out: Path, rank: int, world: int, device, preempt) -> int:
    cfg, resuming = resolve(args, cfg, out, rank, world)
    require_pretraining(cfg, args.config)     # after resolve: a bare --resume auto takes data.shards from the run
    threads = set_threads(cfg.data.num_workers)
    tcfg = cfg.train
    setup_device(device)
    torch.manual_seed(tcfg.seed)
    loader = make_loader(cfg, rank, world)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * tcfg.epochs
    if tcfg.max_steps:
        total = min(total, int(tcfg.max_steps))
    global_batch = cfg.data.batch_size * world
    if resuming and int(resuming[1]["step"]) >= total:
        return nothing_left(resuming[0], int(resuming[1]["step"]), total, cfg)

    model = CSTPModel(cfg)
    if world > 1 and cfg.model.sync_bn:
        model = convert_sync_bn(model, device)
    channels_last = wanted(tcfg.channels_last, device)
    fmt = memory_format(channels_last)
    model.to(device, memory_format=fmt)
    opt, sched = build_optimizer(model, cfg.optim, global_batch,
                                 int(cfg.optim.warmup_epochs * steps_per_epoch), total)
    step = continue_from(resuming, model, opt, sched, loader, rank) if resuming else 0
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    compiled = wanted(tcfg.compile, device)
    net = maybe_compile(net, compiled, lambda m: say(m, rank))

    log = open_log(cfg, out, step, resuming, rank, global_batch)
    too_short = loader.dataset.too_short
    summary = start_summary(cfg, loader.epoch_summary()["videos_in_split"], steps_per_epoch, total, step, world,
                            device, compiled, channels_last,
                            left_out_phrase(too_short, min_frames(loader.dataset.cfg.pair))) + f"; {threads}"
    if rank == 0:
        print(summary, flush=True)
    log.event("start", step, summary=summary, world_size=world, global_batch=global_batch, device=str(device),
              videos_too_short=len(too_short))
    trainer = Trainer(cfg=cfg, model=model, net=net, opt=opt, sched=sched, loader=loader, device=device, fmt=fmt,
                      rank=rank, out=out, log=log, total=total, step=step, preempt=preempt)
    try:
        end = trainer.run()
        if trainer.stopped_by:
            return preempted(trainer, log, out, rank)
    finally:
        log.close()
    if rank == 0:
        rate, wait = end["steady_clips_per_s"], end["steady_data_wait"]
        steady = (f"{rate:.1f} clips/s, data wait {wait:.0%}" if rate is not None else "n/a")
        print(f"done: {plural(trainer.step, 'step')}; steady state ({plural(end['steps_measured'], 'step')}, first "
              f"{end['steps_excluded']} excluded): {steady}; checkpoints in {out}, backbone {out / 'backbone.pt'}")
    return 0


def continue_from(resuming: tuple, model, opt, sched, loader, rank: int) -> int:
    """Load the checkpoint's state into the run's parts; the step it continues at."""
    path, ck, resumed = resuming
    restore(ck, path.name, resumed.changes, model, opt, sched, loader)
    torch.set_rng_state(ck["rng"]["torch"])
    step = int(ck["step"])
    if rank == 0:
        print(f"resumed from {path} at step {step} (epoch {loader.epoch}, batch {loader.delivered})"
              + (f"; changed: {describe(resumed.changes)}" if resumed.changes else ""), flush=True)
    return step


def open_log(cfg, out: Path, step: int, resuming: tuple | None, rank: int, global_batch: int) -> RunLog:
    """config.yaml (a new run's config, or a resume's line appended) and the log, with a resume's record."""
    if rank == 0:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        write_config(out, cfg, record_line(step, resuming[0], resuming[2], when) if resuming else None)
    t = cfg.train
    log = RunLog(out, start_step=step, log_every=t.log_every, clips_per_step=2 * global_batch,
                 tensorboard=t.tensorboard, enabled=rank == 0)
    if resuming:
        log.event("resume", step, checkpoint=resuming[0].name,
                  changes={k: [a, b] for k, (a, b) in resuming[2].changes.items()})
    return log


def preempted(trainer: Trainer, log: RunLog, out: Path, rank: int) -> int:
    name = checkpoint_name(trainer.step)
    log.event("preempted", trainer.step, signal=trainer.stopped_by, checkpoint=name)
    if rank == 0:
        print(f"preempted by {trainer.stopped_by} after step {trainer.step} of {trainer.total}: {out / name} written; "
              f"continue with --resume auto (exit {EXIT_PREEMPTED})", flush=True)
    return EXIT_PREEMPTED


