"""Fine-tuning (the paper's Table 6): the pretrained backbone plus a classifier, trained end to end.

    python eval/finetune.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --split 1
    torchrun --nproc_per_node 8 eval/finetune.py --ckpt ... --shards ... --split 1

Clip-level training (a random 16-frame clip per video and epoch, random crop, flip and colour
jitter on the device); model selection on a validation part carved out of the train split (never
on the test split: the reference code selected on test); video-level testing of the selected model
with 10 clips per video. Under torchrun every rank takes the same number of steps per epoch.
"""
from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def build_parser() -> argparse.ArgumentParser:
    from eval.features import add_model_args

    p = argparse.ArgumentParser(prog="finetune.py", description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--splits", default="1", help="comma-separated, e.g. 1,2,3")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=None, help="stop each split's training early (smoke runs)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per rank and step")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--val-clips", type=int, default=3)
    return p


class Classifier(nn.Module):
    def __init__(self, backbone, n_classes: int, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.feature_dim, n_classes))

    def forward(self, x):
        return self.head(self.backbone(x))


def random_clip(reader, row: int, clip_len: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A training clip: random start, random crop (scale 0.5-1 of the short side, resized to crop)."""
    from shards.clips import clip_from_frames

    n = int(reader.index.n_frames[row])
    start = int(rng.integers(0, max(1, n - clip_len + 1)))
    idx = np.minimum(start + np.arange(clip_len), n - 1)
    needed = np.unique(idx)
    frames = reader.read_frames(row, needed)
    h, w = frames.shape[1:3]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return clip_from_frames(frames, np.searchsorted(needed, idx), (x, y, side, side), 0, (crop, crop))


@torch.no_grad()
def evaluate(model, reader, rows, labels, n_clips, clip_len, crop, device) -> dict:
    """Video-level top-1/top-5 over ``rows`` (this rank's share, summed over ranks)."""
    from eval.classify import video_accuracy
    from eval.features import normalise, video_clips
    from train import ddp as D

    model.eval()
    share = np.arange(len(rows))[D.rank()::D.world_size()]
    hits = torch.zeros(3, dtype=torch.float64, device=device)
    for i in share:
        clips = video_clips(reader, int(rows[i]), n_clips, clip_len, crop).to(device)
        logits = model(normalise(clips)).unsqueeze(0)
        acc = video_accuracy(logits, torch.tensor([int(labels[i])], device=device))
        hits += torch.tensor([acc["top1"], acc["top5"], 1.0], dtype=torch.float64, device=device)
    if D.is_dist():
        torch.distributed.all_reduce(hits)
    model.train()
    return {"top1": float(hits[0] / hits[2]), "top5": float(hits[1] / hits[2])}


def finetune_split(args, reader, backbone, split, device, rank, world):
    from eval.classify import carve_validation, split_rows
    from shards.augment import AugmentConfig, augment
    from train import ddp as D
    from train.sync_bn import convert_sync_bn

    idx = reader.index
    train, test = split_rows(idx, split)
    train, val = carve_validation(train, idx.label[train], args.val_fraction, args.seed)
    if len(val) == 0:
        raise ValueError(f"split {split}: too few train videos to hold out a validation part")
    model = Classifier(copy.deepcopy(backbone), len(idx.classes))
    if world > 1:
        model = convert_sync_bn(model, device)
    model.to(device).train()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    # Every rank takes the same number of steps: the epoch's shuffled videos are cut to a multiple
    # of world x batch, then dealt out by rank.
    per_epoch = len(train) // (world * args.batch_size)
    if per_epoch == 0:
        raise ValueError(f"split {split}: {len(train)} train videos cannot fill one batch of "
                         f"{args.batch_size} on each of {world} ranks")
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
            clips = torch.stack([random_clip(reader, int(train[i]), args.clip_len, args.crop, rng) for i in b]).to(device)
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
        val_acc = evaluate(model, reader, val, idx.label[val], args.val_clips, args.clip_len, args.crop, device)
        history.append({"epoch": epoch, "step": step, "loss": loss.item(), "val_top1": val_acc["top1"]})
        if val_acc["top1"] > best:
            best, best_state = val_acc["top1"], copy.deepcopy(model.state_dict())
        if rank == 0 and not args.no_progress:
            print(f"split {split} epoch {epoch}: loss {loss.item():.3f}, val top-1 {100 * val_acc['top1']:.1f}", flush=True)
        if step >= total:
            break
    model.load_state_dict(best_state)
    test_acc = evaluate(model, reader, test, idx.label[test], args.clips, args.clip_len, args.crop, device)
    D.barrier()
    return {"split": split, "train": len(train), "val": len(val), "test": len(test), "steps": step,
            "val_top1": best, **test_acc}, history


def main(argv: list[str] | None = None) -> int:
    from eval.features import load_backbone
    from eval.report import table, write_results
    from shards.index import IndexError_
    from shards.random_access import FrameReader
    from train import ddp as D
    from train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    rank, world, _, device = D.init_from_env()
    torch.manual_seed(args.seed)
    try:
        reader = FrameReader(args.shards)
        backbone, desc = load_backbone(args.ckpt, args.backbone, args.width, seed=args.seed)
        results, histories = [], {}
        for s in [x.strip() for x in args.splits.split(",") if x.strip()]:
            r, h = finetune_split(args, reader, backbone, s, device, rank, world)
            results.append(r)
            histories[s] = h
    except (CheckpointError, IndexError_, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        D.cleanup()
        return 2
    if rank == 0:
        if len(results) > 1:
            results.append({"split": "mean", **{k: float(np.mean([r[k] for r in results])) for k in ("top1", "top5")}})
        text = f"fine-tuning: {desc}\n" + table(results, ["split", "train", "val", "test", "steps", "val_top1", "top1", "top5"])
        j, t = write_results(args.out, "finetune", {"model": desc, "shards": str(args.shards), "splits": results,
                                                    "history": histories}, text)
        print(text)
        print(f"results: {j} {t}")
    D.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
