"""CSTP self-supervised pretraining, under torchrun or as one plain process.

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        train/pretrain.py --config configs/cstp_r21d_ucf101.yaml data.shards=/shards/ucf101
    python train/pretrain.py --config configs/tiny_cpu.yaml data.shards=out/shards/ucf101

Overrides are section.key=value (YAML values). A run folder that holds checkpoints is continued
with --resume auto (the newest valid checkpoint; a corrupt one is skipped with a warning), or
started again with --overwrite. A resume runs with the checkpoint's config: an override that
changes it is refused unless the key may change on resume or is named with --allow-change. One run
at a time holds a run folder (RUN/.run.lock). SIGTERM or SIGUSR1 stops the run after its current
step with a checkpoint at that step, exit status 75 (README, "Failure behaviour").
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not train/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from shards.errors import CstpError, command, parser  # noqa: E402
from train.resume_keys import ALLOWED_ON_RESUME  # noqa: E402

# The run itself (train/pretrain_run.py) imports torch; it loads after the arguments are parsed, so
# `cstp-pretrain --help` answers in well under a second instead of after torch's import. The pieces
# the run, the launcher and the benches share (make_loader, the start summary) are train/run_start.py's.


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
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: let the command line change config KEY (or a section) of the resumed run; "
                        "repeatable. Without it only " + ", ".join(ALLOWED_ON_RESUME) + " may change")
    return p


@command("pretrain")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)   # overrides may sit between options
    from train import ddp as D     # local (with the next): --help stays torch-free
    from train.pretrain_run import train

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
