"""CSTP pretraining, under torchrun or as one plain process.

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        train/pretrain.py --config configs/cstp_r21d_ucf101.yaml data.shards=/shards/ucf101
    python train/pretrain.py --config configs/tiny_cpu.yaml data.shards=out/shards/ucf101

Overrides are ``section.key=value`` (YAML values). ``--resume auto`` continues from the newest valid
checkpoint in the run folder (a corrupt one is skipped with a warning).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretrain.py", description="CSTP self-supervised pretraining")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    p.add_argument("--out", help="run folder (overrides train.out)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit, touching no data")
    p.add_argument("--resume", default="none", help="'auto' (newest valid checkpoint in the run folder), 'none', or a path")
    p.add_argument("--exit-after-step", type=int, default=None, help=argparse.SUPPRESS)  # crash simulation in tests
    return p


def seed_for(*parts) -> int:
    return zlib.crc32(json.dumps(parts).encode())


def make_loader(cfg: dict, rank: int, world: int):
    from shards.sampling import PairConfig, overlap_candidates
    from shards.stream import PairLoader, StreamConfig

    d = cfg["data"]
    pair = PairConfig(clip_len=d["clip_len"], rates=tuple(d["rates"]), rotations=tuple(d["rotations"]),
                      temporal_overlaps=overlap_candidates(d["n_overlaps"]),
                      spatial_overlaps=overlap_candidates(d["n_overlaps"]), area_range=tuple(d["area_range"]))
    split = None if str(d["split"]) == "all" else str(d["split"])
    sc = StreamConfig(d["shards"], batch_size=d["batch_size"], split=split,
                      seed=cfg["train"]["seed"], shuffle_buffer=d["shuffle_buffer"], out_size=(d["out_size"], d["out_size"]),
                      pair=pair, skip_errors=d["skip_errors"], max_skip_fraction=d["max_skip_fraction"],
                      io_timeout=d["io_timeout"], io_retries=d["io_retries"])
    return PairLoader(sc, num_workers=d["num_workers"], rank=rank, world_size=world)


def export_backbone(model, cfg: dict) -> dict:
    bb = model.backbone
    return bb.torchvision_state_dict() if hasattr(bb, "torchvision_state_dict") else bb.state_dict()


def main(argv: list[str] | None = None) -> int:
    from shards.augment import AugmentConfig, augment_pair
    from train import ddp as D
    from train.checkpoint import checkpoint_name, find_resume, load_checkpoint, prune, save_checkpoint, FORMAT_VERSION
    from train.config import ConfigError, dump_yaml, load_config, require_pretraining
    from train.model import CSTPModel
    from train.optim import build_optimizer
    from train.sync_bn import convert_sync_bn

    args = build_parser().parse_intermixed_args(argv)   # overrides may sit between options
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(dump_yaml(cfg))
            return 0
        require_pretraining(cfg, args.config)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"pretrain: {exc}", file=sys.stderr)
        return 2
    if args.out:
        cfg["train"]["out"] = args.out
    tcfg = cfg["train"]
    out = Path(tcfg["out"])

    rank, world, _, device = D.init_from_env()
    torch.manual_seed(tcfg["seed"])
    loader = make_loader(cfg, rank, world)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * tcfg["epochs"]
    if tcfg["max_steps"]:
        total = min(total, int(tcfg["max_steps"]))
    global_batch = cfg["data"]["batch_size"] * world

    model = CSTPModel(cfg)
    if world > 1 and cfg["model"]["sync_bn"]:
        model = convert_sync_bn(model, device)
    model.to(device)
    opt, sched = build_optimizer(model, cfg["optim"], global_batch,
                                 int(cfg["optim"]["warmup_epochs"] * steps_per_epoch), total)
    step = 0
    if args.resume != "none":
        found = find_resume(out) if args.resume == "auto" else (Path(args.resume), load_checkpoint(args.resume))
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
    aug = AugmentConfig(**cfg["augment"])

    writer = None
    log = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        log = open(out / "log.jsonl", "a")
        if tcfg["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                print("pretrain: tensorboard is not installed; logging to log.jsonl only", file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, unit="step", disable=rank != 0, file=sys.stderr)

    def save(final: bool = False):
        if rank == 0:
            payload = {
                "format_version": FORMAT_VERSION, "config": cfg, "step": step, "epoch": loader.epoch,
                "backbone": export_backbone(model, cfg), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": {},
                "rng": {"torch": torch.get_rng_state()}, "loader": loader.state_dict(),
            }
            save_checkpoint(out / checkpoint_name(step), payload)
            prune(out, tcfg["keep_ckpts"])
            if final:
                torch.save(payload["backbone"], out / "backbone.pt")
        D.barrier()

    model.train()
    t_ready = time.perf_counter()
    while step < total:
        for batch in loader:
            t_batch = time.perf_counter()
            clips = {k: batch[k].to(device, non_blocking=True) for k in ("clip1", "clip2")}
            labels = {k: batch[k].to(device) for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t")}
            gen = torch.Generator(device=device).manual_seed(seed_for(tcfg["seed"], step, rank))
            x1, x2 = augment_pair({**clips, "rot1": labels["rot1"], "rot2": labels["rot2"]}, aug, gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and tcfg["bf16"]):
                loss, parts, accs = net(x1, x2, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["optim"]["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["optim"]["clip_grad"])
            opt.step()
            sched.step()
            step += 1
            model.method.on_step(step / total)
            t_done = time.perf_counter()
            if rank == 0:
                rec = {"step": step, "epoch": loader.epoch, "loss": loss.item(),
                       **{f"loss_{k}": v.item() for k, v in parts.items()},
                       **{f"acc_{k}": v.item() for k, v in accs.items()},
                       "lr": sched.get_last_lr()[0],
                       "clips_per_s": 2 * global_batch / max(t_done - t_ready, 1e-9),
                       "data_wait": (t_batch - t_ready) / max(t_done - t_ready, 1e-9)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                if writer is not None and step % tcfg["log_every"] == 0:
                    for k, v in rec.items():
                        if k not in ("step", "epoch"):
                            writer.add_scalar(k, v, step)
            if step % tcfg["ckpt_every"] == 0 or step == total:
                save(final=step == total)
            if args.exit_after_step is not None and step == args.exit_after_step:
                os._exit(3)          # as abrupt as a killed process: no clean-up, no final save
            t_ready = time.perf_counter()
            if step >= total:
                break
    bar.close()
    if log:
        log.close()
    if writer:
        writer.close()
    if rank == 0:
        print(f"done: {step} steps; checkpoint {out / checkpoint_name(step)}, backbone {out / 'backbone.pt'}")
    D.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
