"""Fine-tuning (the paper's Table 6; from scratch, its Table 1 rows 1-4): a backbone plus the authors'
classifier, trained end to end as their main_ft_mp.py and tested as their test.py.

    python eval/finetune.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --splits 1
    torchrun --nproc_per_node 2 eval/finetune.py --ckpt ... --shards ... --splits 1,2,3 optim.lr=0.02
    python eval/finetune.py --ckpt none --shards ... --config configs/ablations/table1_row02.yaml
    python eval/finetune.py --print-config [--config configs/finetune_k400.yaml] [key=value ...]

Every setting is a key of the fine-tune config (eval/ft_config.py; --help-config lists them, with the
authors' values as defaults): SGD (lr 0.025, momentum 0.9, weight decay 5e-4), 100 epochs,
ReduceLROnPlateau on the validation loss (patience 10), 60 clips a step over all ranks; a random
clip per video and epoch, frames 4 apart, a random-sized crop (20-100% of the area) resized to 112,
colour jitter with p 0.3, no flip; test clips every (16-1) x 4 frames plus one ending at the last
frame, 128 short side and a 112 centre crop, logits averaged. Model selection and the lr schedule
use a validation part carved out of the train split (the authors use the test split, so their
figures are expected to be higher).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not eval/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import eval  # noqa: E402,F401  before torch: OpenMP's threads wait asleep (train/threads.py, passive_wait)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from eval import ft_model  # noqa: E402
from eval.ckpt_source import NONE, load_model, resolve_path, settle  # noqa: E402
from eval.classify import split_rows, validation_split, video_accuracy  # noqa: E402
from eval.features import add_model_args, check_crop, given, normalise  # noqa: E402
from eval.ft_clips import eval_clip_indices  # noqa: E402
from eval.ft_config import FinetuneConfig, as_dict, clip_rule, help_lines, load, to_yaml, validate  # noqa: E402
from eval.ft_data import centre_clips, device_augment, random_clip, val_clip_indices  # noqa: E402
from eval.ft_plan import plan  # noqa: E402
from eval.figures import class_figures  # noqa: E402
from eval.report import table, write_results  # noqa: E402
from train.augment import augment  # noqa: E402
from shards.errors import command, parser  # noqa: E402
from shards.random_access import FrameReader  # noqa: E402
from train import ddp as D  # noqa: E402
from train.sync_bn import convert_sync_bn  # noqa: E402
from train.threads import set_threads  # noqa: E402

PROG = "finetune.py"


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# shorthand flag -> (config key, type): each sets its key over --config and key=value overrides
SHORTHAND = {"--epochs": ("optim.epochs", int), "--max-steps": ("optim.max_steps", int),
             "--batch-size": ("optim.batch_size", int), "--lr": ("optim.lr", float),
             "--stride": ("clips.stride", int), "--clip-len": ("clips.clip_len", int), "--crop": ("clips.crop", int),
             "--short-side": ("clips.short_side", int), "--test-clips": ("eval.test_clips", str),
             "--val-fraction": ("eval.val_fraction", float), "--val-clips": ("eval.val_clips", int),
             "--rates": ("rates", int_list), "--rotations": ("rotations", int_list), "--seed": ("seed", int)}


def _default(key: str):
    node = FinetuneConfig()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def add_config_args(p: argparse.ArgumentParser, shorthand: dict = SHORTHAND) -> None:
    """--config, key=value overrides, --print-config, --help-config and the shorthand flags."""
    p.add_argument("overrides", nargs="*", metavar="key=value", help="fine-tune config overrides, e.g. optim.lr=0.02")
    p.add_argument("--config", help="YAML whose finetune: section sets the fine-tune config (configs/finetune*.yaml, "
                                    "or an ablation row of Table 1)")
    p.add_argument("--print-config", action="store_true", help="print the resolved fine-tune config as YAML and exit")
    p.add_argument("--help-config", action="store_true", help="list every fine-tune config key and exit")
    for flag, (key, kind) in shorthand.items():
        default, leaf = _default(key), key.rsplit(".", 1)[-1]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        if default is None and leaf in NONE:
            shown = f"the checkpoint's; {NONE[leaf]} with --ckpt none"
        said = f" (default: {shown})" if shown is not None else " (unset: no limit)"
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, dest=key, metavar=flag[2:].upper().replace("-", "_"),
                       help=f"sets {key}{said}")


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, __doc__.split("\n\n")[0])
    add_model_args(p, required=False, clip_options=False, test_clips=False)
    p.add_argument("--split", "--splits", dest="splits", default="1", help="split(s), comma-separated, e.g. 1,2,3")
    add_config_args(p)
    return p


def parse(p: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, FinetuneConfig | None]:
    """(args, config); config None when --print-config or --help-config has printed and the command is done."""
    args = p.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if "." in k or k in ("rates", "rotations", "seed")}
    if args.help_config:
        print("\n".join(help_lines()))
        return args, None
    cfg = load(args.config, args.overrides, flags)
    if args.print_config:
        trained = (load_model(resolve_path(args.ckpt), given(args, "backbone"), given(args, "width"), cfg.seed)[2]
                   if args.ckpt else None)
        print(to_yaml(fill_clips(cfg, trained)), end="")
        return args, None
    for flag in ("ckpt", "shards"):
        if getattr(args, flag) is None:
            p.error(f"the following arguments are required: --{flag}")
    return args, cfg


def fill_clips(cfg: FinetuneConfig, trained: dict | None) -> FinetuneConfig:
    """clips.* left null take what the checkpoint was trained with (the --ckpt none values without
    one); a set clip length or crop the checkpoint disagrees with gets a warning line."""
    c = cfg.clips
    for key, value in settle(PROG, {k: getattr(c, k) for k in ("clip_len", "crop", "short_side", "mean", "std")},
                             trained).items():
        setattr(c, key, value)
    validate(cfg)
    return cfg


def evaluate(model, reader, rows, labels, cfg: FinetuneConfig, device, clips, rng=None, chunk: int = 16) -> dict:
    """Video-level top-1/top-5, the mean cross-entropy of video logits and the confusion matrix (true x
    predicted class) over ``rows`` (this rank's share, summed over ranks). ``clips``: a test rule, or
    'val' (val_clip_indices with ``rng``)."""
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64, device=device)
    n_cls = len(reader.index.classes)
    cm = torch.zeros(n_cls * n_cls, dtype=torch.float64, device=device)
    with torch.no_grad():
        for i in np.arange(len(rows))[D.rank()::D.world_size()]:
            row, n = int(rows[i]), int(reader.index.n_frames[int(rows[i])])
            idx = (val_clip_indices(n, cfg, rng) if clips == "val"
                   else eval_clip_indices(n, cfg.clips.clip_len, cfg.clips.stride, clips))
            logits = torch.cat([model(normalise(centre_clips(reader, row, idx[s:s + chunk], cfg).to(device),
                                                cfg.clips.mean, cfg.clips.std))
                                for s in range(0, len(idx), chunk)]).unsqueeze(0)
            y = torch.tensor([int(labels[i])], device=device)
            acc = video_accuracy(logits, y)
            loss = F.cross_entropy(logits.float().mean(dim=1), y)
            stats += torch.tensor([acc["top1"], acc["top5"], float(loss), 1.0], dtype=torch.float64, device=device)
            cm[int(labels[i]) * n_cls + int(logits.float().mean(dim=1).argmax())] += 1
    if D.is_dist():
        torch.distributed.all_reduce(stats)
        torch.distributed.all_reduce(cm)
    n = max(float(stats[3]), 1.0)
    return {"top1": float(stats[0]) / n, "top5": float(stats[1]) / n, "loss": float(stats[2]) / n,
            "confusion": cm.view(n_cls, n_cls).long().cpu().numpy()}


def check_plan(argv: list[str], world: int) -> None:
    """What fine-tuning's workers would refuse before training: the options and config, the shard
    index, every split of --splits, and that each split's train part fills one batch on every rank."""
    args, cfg = parse(build_parser(), argv)
    if cfg is None:
        return
    reader = FrameReader(args.shards)
    for s in (x.strip() for x in args.splits.split(",") if x.strip()):
        train, _ = split_rows(reader.index, s)
        train, val = validation_split(train, reader.index.label[train], cfg.eval.val_fraction, cfg.seed)
        plan(len(train), len(val), cfg, world, s)
    # the crop against the frames needs the checkpoint: the workers check it


def train_epoch(net, model, reader, train, labels, cfg, opt, epoch, rank, world, per_rank, steps, device, frozen):
    """One epoch; returns (last loss, steps taken)."""
    ft_model.train_mode(model, frozen, cfg)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))[: steps * world * per_rank]
    mine = order.reshape(steps, world, per_rank)[:, rank]
    rng = np.random.default_rng([cfg.seed, epoch, rank])
    aug, loss = device_augment(cfg), torch.zeros(())
    for b in mine:
        clips = torch.stack([random_clip(reader, int(train[i]), cfg, rng) for i in b]).to(device)
        y = torch.from_numpy(labels[b].astype(np.int64)).to(device)
        gen = torch.Generator(device=device).manual_seed(int(rng.integers(1 << 31)))
        loss = F.cross_entropy(net(normalise(augment(clips, aug, gen), cfg.clips.mean, cfg.clips.std)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach()), len(mine)


def finetune_split(cfg: FinetuneConfig, reader, backbone, split: str, device, rank: int, world: int,
                   frozen: bool = False, progress: bool = True):
    idx = reader.index
    train, test = split_rows(idx, split)
    train, val = validation_split(train, idx.label[train], cfg.eval.val_fraction, cfg.seed)
    per_rank, per_epoch = plan(len(train), len(val), cfg, world, split)
    model = ft_model.build(copy.deepcopy(backbone), len(idx.classes), cfg, frozen)
    if world > 1:
        model = convert_sync_bn(model, device)
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    o = cfg.optim
    opt = torch.optim.SGD(ft_model.trainable(model, frozen), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min", patience=o.patience, factor=o.factor)
    best, best_state, step, history = -1.0, None, 0, []
    for epoch in range(o.epochs):
        steps = per_epoch if o.max_steps is None else min(per_epoch, o.max_steps - step)
        loss, took = train_epoch(net, model, reader, train, idx.label[train], cfg, opt, epoch, rank, world, per_rank,
                                 steps, device, frozen)
        step += took
        v = evaluate(model, reader, val, idx.label[val], cfg, device, "val", np.random.default_rng([cfg.seed, epoch, 7]))
        sched.step(v["loss"])         # every rank steps on the same all-reduced loss (the authors: rank 0 only)
        history.append({"epoch": epoch, "step": step, "loss": loss, "val_loss": v["loss"], "val_top1": v["top1"],
                        "lr": opt.param_groups[0]["lr"]})
        if v["top1"] > best:
            best, best_state = v["top1"], copy.deepcopy(model.state_dict())
        if rank == 0 and progress:
            print(f"split {split} epoch {epoch}: loss {loss:.3f}, val loss {v['loss']:.3f}, "
                  f"val top-1 {100 * v['top1']:.1f}, lr {opt.param_groups[0]['lr']:.2g}", flush=True)
        if o.max_steps is not None and step >= o.max_steps:
            break
    model.load_state_dict(best_state)
    test_acc = evaluate(model, reader, test, idx.label[test], cfg, device, clip_rule(cfg))
    D.barrier()
    return {"split": split, "train": len(train), "val": len(val), "test": len(test), "steps": step,
            "val_top1": best, "top1": test_acc["top1"], "top5": test_acc["top5"], "confusion": test_acc["confusion"]}, history


def run(args, cfg: FinetuneConfig, name: str, frozen: bool) -> int:
    """Fine-tune (or, ``frozen``, linear-evaluate) on every split of --splits; write ``name``.json/.txt."""
    reader = FrameReader(args.shards)
    splits = [x.strip() for x in args.splits.split(",") if x.strip()]
    for s in splits:                       # every split checked before any training starts
        split_rows(reader.index, s)
    args.ckpt = resolve_path(args.ckpt)
    backbone, desc, trained = load_model(args.ckpt, given(args, "backbone"), given(args, "width"), seed=cfg.seed)
    cfg = fill_clips(cfg, trained)
    check_crop(reader.index, cfg.clips.crop, cfg.clips.short_side)
    rank, world, _, device = D.init_from_env()
    set_threads()                      # intra-op threads from the cores (OMP_NUM_THREADS wins)
    torch.manual_seed(cfg.seed)
    try:
        results, histories = [], {}
        for s in splits:
            results.append(None)
            results[-1], histories[s] = finetune_split(cfg, reader, backbone, s, device, rank, world, frozen,
                                                       not args.no_progress)
    finally:
        D.cleanup()
    if rank == 0:
        kind = "linear evaluation" if frozen else "fine-tuning"
        for r in results:           # the figures take the matrix; the JSON keeps the accuracies
            class_figures(args.out, f"{name}_split{r['split']}", r.pop("confusion"), list(reader.index.classes),
                          f"{kind}: {desc}, split {r['split']}")
        if len(results) > 1:
            results.append({"split": "mean", **{k: float(np.mean([r[k] for r in results])) for k in ("top1", "top5")}})
        c = cfg.clips
        summary = (f"stride {c.stride}, clip_len {c.clip_len}, crop {c.crop}, test clips {cfg.eval.test_clips}, "
                   f"rates {cfg.rates}, rotations {cfg.rotations}, lr {cfg.optim.lr}, batch {cfg.optim.batch_size}")
        text = (f"{kind}: {desc}\n{summary}\n"
                + table(results, ["split", "train", "val", "test", "steps", "val_top1", "top1", "top5"]))
        j, t = write_results(args.out, name, {"model": desc, "checkpoint": args.ckpt, "shards": str(args.shards),
                                              "protocol": "authors",
                                              "frozen": frozen, "config": as_dict(cfg), "splits": results,
                                              "history": histories}, text)
        print(text)
        print(f"results: {j} {t}")
    return 0


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args, cfg = parse(build_parser(), argv)
    return 0 if cfg is None else run(args, cfg, "finetune", frozen=False)


if __name__ == "__main__":
    sys.exit(main())
