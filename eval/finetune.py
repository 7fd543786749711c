"""Fine-tuning (the paper's Table 6; from scratch, its Table 1 rows 1-4): a backbone plus a classifier,
trained end to end.

    python eval/finetune.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --splits 1
    torchrun --nproc_per_node 8 eval/finetune.py --ckpt ... --shards ... --splits 1,2,3
    python eval/finetune.py --ckpt none --shards ... --config configs/ablations/table1_row02.yaml

Clip-level training (a random clip per video and epoch, frames --stride apart, as the authors'
main_ft_mp.py; random crop, flip and colour jitter on the device; optional playback-rate and
rotation augmentation); model selection on a validation part carved out of the train split (the
authors select on the test split, so their figures are expected to be higher); video-level testing
of the selected model on --test-clips clips per video. Under torchrun every rank takes the same
number of steps per epoch.
"""
from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from eval.classify import split_rows, validation_split, video_accuracy
from eval.features import add_model_args, check_crop, clips_at, normalise
from eval.figures import class_figures
from eval.ft_clips import ALL, draw, eval_clip_indices, train_clip_indices
from eval.ft_config import int_list, read_finetune_section
from eval.report import table, write_results
from shards.augment import AugmentConfig, augment
from shards.clips import clip_from_frames
from shards.errors import InputError, command, parser
from shards.random_access import FrameReader
from train import ddp as D
from train.checkpoint import load_backbone
from train.sync_bn import convert_sync_bn
from train.threads import set_threads

PROG = "finetune.py"


def test_clips(text: str) -> int | str:
    if text == ALL:
        return ALL
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise InputError(f"--test-clips {text}: give a number of clips per video (e.g. 10) or 'all'")


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, __doc__.split("\n\n")[0])
    add_model_args(p, test_clips=False)
    p.add_argument("--split", "--splits", dest="splits", default="1", help="split(s), comma-separated, e.g. 1,2,3")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per split")
    p.add_argument("--max-steps", type=int, default=None, help="stop each split's training early (smoke runs)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per rank and step")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (cosine decay)")
    p.add_argument("--stride", type=int, default=4, help="frames between a clip's consecutive frames (the authors' pb_rate)")
    p.add_argument("--test-clips", type=test_clips, default=10,
                   help="clips per test video: a number (evenly spaced) or 'all' (every non-overlapping clip)")
    p.add_argument("--rates", type=int_list("rates"), default=[1],
                   help="playback-rate augmentation, comma-separated: each training clip's frames are --stride x one of these apart")
    p.add_argument("--rotations", type=int_list("rotations"), default=[0],
                   help="rotation augmentation, comma-separated: each training clip turned by one of these degrees (multiples of 90)")
    p.add_argument("--config", help="ablation YAML whose finetune: section sets --rates/--rotations (flags given here win)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each class's train videos held out for model selection")
    p.add_argument("--val-clips", type=int, default=3, help="evenly spaced clips per validation video")
    return p


def parse_args(argv) -> argparse.Namespace:
    """The options, with --config's finetune: section as defaults under the command line's flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    p = build_parser()
    if known.config:
        p.set_defaults(**read_finetune_section(known.config))
    args = p.parse_args(argv)
    if args.stride < 1:
        raise InputError(f"--stride {args.stride}: frames are at least 1 apart; the authors use --stride 4")
    return args


class Classifier(nn.Module):
    def __init__(self, backbone, n_classes: int, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.feature_dim, n_classes))

    def forward(self, x):
        return self.head(self.backbone(x))


def random_clip(reader, row: int, args, rng: np.random.Generator) -> torch.Tensor:
    """A training clip: random start, rate and rotation; random crop (0.5-1 of the short side) resized to --crop."""
    step = args.stride * draw(rng, args.rates)
    idx = train_clip_indices(int(reader.index.n_frames[row]), args.clip_len, step, rng)
    needed = np.unique(idx)
    frames = reader.read_frames(row, needed)
    h, w = frames.shape[1:3]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return clip_from_frames(frames, np.searchsorted(needed, idx), (x, y, side, side), draw(rng, args.rotations),
                            (args.crop, args.crop))


@torch.no_grad()
def evaluate(model, reader, rows, labels, clips, args, device, chunk: int = 16) -> dict:
    """Video-level top-1/top-5 over ``rows`` (this rank's share, summed over ranks), and the confusion
    matrix (true x predicted class) for the figures."""
    model.eval()
    share = np.arange(len(rows))[D.rank()::D.world_size()]
    hits = torch.zeros(3, dtype=torch.float64, device=device)
    n = len(reader.index.classes)
    cm = torch.zeros(n * n, dtype=torch.float64, device=device)
    for i in share:
        row = int(rows[i])
        idx = eval_clip_indices(int(reader.index.n_frames[row]), args.clip_len, args.stride, clips)
        logits = torch.cat([model(normalise(clips_at(reader, row, idx[s:s + chunk], args.crop, args.short_side).to(device)))
                            for s in range(0, len(idx), chunk)]).unsqueeze(0)
        acc = video_accuracy(logits, torch.tensor([int(labels[i])], device=device))
        hits += torch.tensor([acc["top1"], acc["top5"], 1.0], dtype=torch.float64, device=device)
        cm[int(labels[i]) * n + int(logits.float().mean(dim=1).argmax())] += 1
    if D.is_dist():
        torch.distributed.all_reduce(hits)
        torch.distributed.all_reduce(cm)
    model.train()
    return {"top1": float(hits[0] / hits[2]), "top5": float(hits[1] / hits[2]),
            "confusion": cm.view(n, n).long().cpu().numpy()}


def steps_per_epoch(n_train: int, n_val: int, batch: int, world: int, split: str) -> int:
    """Steps every rank takes per epoch; none is an InputError naming the change that gives one
    (the launcher, eval/ft_launch.py, runs this check before it starts workers)."""
    per_epoch = n_train // (world * batch)
    if per_epoch == 0:
        if n_train >= world:
            fix = f"use --batch-size {n_train // world} or less"
        elif n_train:
            fix = f"even --batch-size 1 needs {world} of them: run on {n_train} rank{'s' * (n_train > 1)} or fewer"
        else:
            fix = "choose a split with train videos or lower --val-fraction"
        raise InputError(f"split {split}: {n_train} train videos (after {n_val} held out) cannot fill one batch "
                         f"of --batch-size {batch} on each of {world} ranks; {fix}")
    return per_epoch


def finetune_split(args, reader, backbone, split, device, rank, world):
    idx = reader.index
    train, test = split_rows(idx, split)
    train, val = validation_split(train, idx.label[train], args.val_fraction, args.seed)
    # Every rank takes the same number of steps: the epoch's shuffled videos are cut to a multiple
    # of world x batch, then dealt out by rank.
    per_epoch = steps_per_epoch(len(train), len(val), args.batch_size, world, split)
    model = Classifier(copy.deepcopy(backbone), len(idx.classes))
    if world > 1:
        model = convert_sync_bn(model, device)
    model.to(device).train()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    total = per_epoch * args.epochs if args.max_steps is None else min(per_epoch * args.epochs, args.max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
    aug = AugmentConfig(p_rotate=0.0, p_blur=0.0, p_gray=0.0)
    best, best_state, step = -1.0, None, 0
    history = []
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(train))[: per_epoch * world * args.batch_size]
        mine = order.reshape(per_epoch, world, args.batch_size)[:, rank]
        rng = np.random.default_rng([args.seed, epoch, rank])
        for b in mine:
            clips = torch.stack([random_clip(reader, int(train[i]), args, rng) for i in b]).to(device)
            y = torch.from_numpy(idx.label[train[b]].astype(np.int64)).to(device)
            gen = torch.Generator(device=device).manual_seed(int(rng.integers(1 << 31)))
            loss = F.cross_entropy(net(augment(clips, aug, gen)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
        val_acc = evaluate(model, reader, val, idx.label[val], args.val_clips, args, device)
        history.append({"epoch": epoch, "step": step, "loss": loss.item(), "val_top1": val_acc["top1"]})
        if val_acc["top1"] > best:
            best, best_state = val_acc["top1"], copy.deepcopy(model.state_dict())
        if rank == 0 and not args.no_progress:
            print(f"split {split} epoch {epoch}: loss {loss.item():.3f}, val top-1 {100 * val_acc['top1']:.1f}", flush=True)
        if step >= total:
            break
    model.load_state_dict(best_state)
    test_acc = evaluate(model, reader, test, idx.label[test], args.test_clips, args, device)
    if rank == 0:
        class_figures(args.out, f"finetune_split{split}", test_acc["confusion"], list(idx.classes),
                      f"fine-tuning: {args.ckpt}, split {split}")
    del test_acc["confusion"]
    D.barrier()
    return {"split": split, "train": len(train), "val": len(val), "test": len(test), "steps": step,
            "val_top1": best, **test_acc}, history


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads()                      # intra-op threads from the cores (OMP_NUM_THREADS wins)
    reader = FrameReader(args.shards)
    check_crop(reader.index, args.crop, args.short_side)
    splits = [x.strip() for x in args.splits.split(",") if x.strip()]
    for s in splits:                       # every split checked before any training starts
        split_rows(reader.index, s)
    backbone, desc = load_backbone(args.ckpt, args.backbone, args.width, seed=args.seed)
    rank, world, _, device = D.init_from_env()
    torch.manual_seed(args.seed)
    try:
        results, histories = [], {}
        for s in splits:
            r, h = finetune_split(args, reader, backbone, s, device, rank, world)
            results.append(r)
            histories[s] = h
    finally:
        D.cleanup()
    if rank == 0:
        if len(results) > 1:
            results.append({"split": "mean", **{k: float(np.mean([r[k] for r in results])) for k in ("top1", "top5")}})
        protocol = {"stride": args.stride, "test_clips": args.test_clips, "rates": args.rates,
                    "rotations": args.rotations, "clip_len": args.clip_len, "crop": args.crop}
        text = (f"fine-tuning: {desc}\n" + ", ".join(f"{k} {v}" for k, v in protocol.items()) + "\n"
                + table(results, ["split", "train", "val", "test", "steps", "val_top1", "top1", "top5"]))
        j, t = write_results(args.out, "finetune", {"model": desc, "shards": str(args.shards), **protocol,
                                                    "splits": results, "history": histories}, text)
        print(text)
        print(f"results: {j} {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
