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
    from eval.finetune import check_plan     # local (and parser's): the launcher's --help stays torch-free
    check_plan(argv, world)


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
