"""How a fine-tuning set divides into steps over the ranks, and why it cannot (one line naming the
option to change): checked by the launcher before any worker starts, and by each worker."""
from __future__ import annotations

from eval.ft_config import FinetuneConfig
from shards.errors import InputError, plural


def plan(n_train: int, n_val: int, cfg: FinetuneConfig, world: int, split: str) -> tuple[int, int]:
    """(clips per rank and step, steps per epoch): the batch is over all ranks, the last partial one dropped."""
    b = cfg.optim.batch_size
    if b % world:
        raise InputError(f"finetune.optim.batch_size={b} (clips per step over all ranks) does not divide over "
                         f"{world} ranks; use a multiple of {world}, e.g. {max(world, b - b % world)}")
    if b < 2 and cfg.head.bn:
        raise InputError(f"finetune.optim.batch_size={b}: the head's BatchNorm1d needs at least 2 clips a step; "
                         "use --batch-size 2 or more, or head.bn=false")
    if n_train // b == 0:
        fit, least = n_train - n_train % world, 2 if cfg.head.bn else 1
        if n_train >= world and fit >= least:
            fix = f"use --batch-size {fit} or less"
        elif n_train >= world:
            fix = ("the head's BatchNorm1d needs 2 clips a step: lower eval.val_fraction, choose a split with more "
                   "train videos, or head.bn=false")
        elif n_train:
            fix = f"even one clip a rank needs {world} of them: run on {n_train} rank{'s' * (n_train > 1)} or fewer"
        else:
            fix = "choose a split with train videos or lower eval.val_fraction"
        raise InputError(f"split {split}: {plural(n_train, 'train video')} (after {n_val} held out) cannot fill one "
                         f"batch of finetune.optim.batch_size={b}; {fix}")
    return b // world, n_train // b
