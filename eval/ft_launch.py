"""cstp-finetune: fine-tuning in this process, or with --nproc-per-node N checked here and then run by
N workers (train/launch.py):

    cstp-finetune --nproc-per-node 2 --ckpt runs/cstp/backbone.pt --shards /shards/ucf101 --splits 1,2,3
"""
from __future__ import annotations

import sys

from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not eval/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from shards.errors import command  # noqa: E402
from train.launch import Target, run  # noqa: E402


def check(argv: list[str], world: int) -> None:
    """What fine-tuning's workers would refuse before training: the options and config, the shard
    index, every split of --splits, and that each split's train part fills one batch on every rank."""
    # local (these three and parser's): the launcher's --help stays torch-free
    from eval import finetune as F
    from eval.classify import split_rows, validation_split
    from shards.random_access import FrameReader

    args, cfg = F.parse(F.build_parser(), argv)
    if cfg is None:
        return
    reader = FrameReader(args.shards)
    for s in (x.strip() for x in args.splits.split(",") if x.strip()):
        train, _ = split_rows(reader.index, s)
        train, val = validation_split(train, reader.index.label[train], cfg.eval.val_fraction, cfg.seed)
        F.plan(len(train), len(val), cfg, world, s)
    # the crop against the frames needs the checkpoint: the workers check it


def parser():
    from eval.finetune import build_parser     # local: see check()
    return build_parser()


FINETUNE = Target(prog="finetune.py", module="eval.finetune", parser=parser, check=check,
                  in_process=lambda argv: "--print-config" in argv or "--help-config" in argv)


@command("finetune.py")
def main(argv: list[str] | None = None) -> int:
    return run(FINETUNE, argv)


if __name__ == "__main__":
    sys.exit(main())
