"""One launcher for the distributed commands: ``cstp-pretrain`` and ``cstp-finetune``.

    cstp-pretrain --nproc-per-node 2 --config configs/tiny_cpu.yaml data.shards=out/shards/ucf101
    cstp-pretrain --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 --config ...   # on every node
    cstp-pretrain --config ...                     # no --nproc-per-node: one process, as before

With --nproc-per-node the parent checks what it can before any worker starts (the options, the
config, the shard index and that the split fills one global batch at this world size), so a mistake
is one line and exit 2, said once. Then it starts the workers (``python -m <the command's module>``)
through torch's elastic launch API, as torchrun would.

A worker's own expected error is said by the worker (rank 0 says an error every rank meets, as under
torchrun); the launcher exits with that worker's status instead of torch's report of ~40 lines:
so an InputError in a worker is still one line and exit 2, a preempted run (SIGTERM/SIGUSR1 reach the
workers) keeps the status its workers chose. Only a status no worker explained (a crash's traceback is
above it, or a signal killed a worker) gets one line of the launcher's own.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):        # run by path: import this checkout's packages, not train/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from shards.errors import EXIT_RUN_FAILED, EXIT_USAGE, InputError, command  # noqa: E402
from train import pretrain as P  # noqa: E402
from train.pretrain import build_parser  # noqa: E402
from train.run_start import make_loader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Statuses a worker explains itself (one line of its own on stderr): input error, failed run, a
# preempted run (train/preemption.py), interrupted.
EXPLAINED = {EXIT_USAGE, EXIT_RUN_FAILED, 75, 130}
FORWARDED = (signal.SIGTERM, signal.SIGUSR1)    # to the workers, which checkpoint and exit (preemption)


@dataclasses.dataclass(frozen=True)
class Target:
    prog: str                                          # the name in the command's messages
    module: str                                        # what each worker runs: python -m <module> ARGS
    parser: Callable[[], argparse.ArgumentParser]      # the command's own options (for --help)
    check: Callable[[list[str], int], None]            # the parent's checks at a world size; raises InputError
    in_process: Callable[[list[str]], bool] = lambda argv: False   # argv that does no training (--print-config)


def launcher_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("launcher (torchrun's options, checked here before any worker starts)")
    g.add_argument("--nproc-per-node", "--nproc_per_node", type=positive, default=None, metavar="N",
                   help="worker processes on this node (one per GPU); without it, this process alone%(default).0s")
    g.add_argument("--nnodes", default="1", metavar="M[:MAX]", help="nodes, or a MIN:MAX range for an elastic job")
    g.add_argument("--rdzv-endpoint", "--rdzv_endpoint", default="", metavar="HOST:PORT",
                   help="rendezvous address, the same on every node (needed with more than one node)%(default).0s")
    g.add_argument("--rdzv-backend", "--rdzv_backend", default="c10d", help="torch's rendezvous backend")
    g.add_argument("--rdzv-id", "--rdzv_id", default="cstp", help="the job's id, the same on every node")
    g.add_argument("--max-restarts", "--max_restarts", type=int, default=0,
                   help="restarts of the worker group after a failure (a lost node); a restart resumes from the newest checkpoint")
    return p


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more")
    return int(text)


def node_range(text: str) -> tuple[int, int]:
    parts = text.split(":")
    if len(parts) > 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise InputError(f"--nnodes {text}: give a number of nodes (e.g. 2) or a MIN:MAX range (e.g. 1:4)")
    lo, hi = int(parts[0]), int(parts[-1])
    if lo > hi:
        raise InputError(f"--nnodes {text}: the minimum is above the maximum")
    return lo, hi


def print_help(target: Target) -> None:
    launcher_options(target.parser()).print_help()


def run(target: Target, argv: Sequence[str] | None = None) -> int:
    """The console script: the command in this process, or checked here and then run by workers."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own = launcher_options(argparse.ArgumentParser(add_help=False, allow_abbrev=False))
    largs, rest = own.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print_help(target)
        return 0
    if largs.nproc_per_node is None or target.in_process(rest):
        if largs.nproc_per_node is None and (largs.nnodes != "1" or largs.rdzv_endpoint):
            raise InputError("--nnodes and --rdzv-endpoint start workers: give --nproc-per-node too")
        return int(importlib.import_module(target.module).main(rest) or 0)
    lo, hi = node_range(largs.nnodes)
    if hi > 1 and not largs.rdzv_endpoint:
        raise InputError(f"--nnodes {largs.nnodes}: more than one node needs --rdzv-endpoint HOST:PORT "
                         "(the same on every node)")
    # The smallest world the job may start with: an elastic job that grows is checked again by its workers.
    target.check(rest, largs.nproc_per_node * lo)
    return start_workers(target, rest, largs, lo, hi)


def launch_config(largs, lo: int, hi: int):
    from torch.distributed.launcher.api import LaunchConfig

    standalone = hi == 1 and not largs.rdzv_endpoint
    # SIGTERM and SIGUSR1 are ours (forward_signals): torch's agent would turn them into a shutdown that
    # kills workers after a timeout and drops their exit status.
    return LaunchConfig(min_nodes=lo, max_nodes=hi, nproc_per_node=largs.nproc_per_node,
                        run_id=uuid.uuid4().hex if standalone else largs.rdzv_id, rdzv_backend=largs.rdzv_backend,
                        rdzv_endpoint="localhost:0" if standalone else largs.rdzv_endpoint,
                        max_restarts=largs.max_restarts, monitor_interval=0.1, start_method="spawn",
                        signals_to_handle="SIGINT,SIGHUP,SIGQUIT")


def worker_env(nproc: int) -> None:
    """The workers inherit this process's environment: this checkout's packages, and (as torchrun
    does, but sharing the cores instead of 1 each) a thread count per worker."""
    path = os.environ.get("PYTHONPATH", "")
    if str(ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), path) if p)
    if nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))


def forward_signals() -> dict:
    """SIGTERM/SIGUSR1 to the launcher reach its workers (they run in their own sessions, so a signal
    to the launcher's process group would miss them); the agent then sees their exit statuses."""
    import psutil

    def forward(signum, frame):
        kids = psutil.Process().children()
        if not kids:           # no workers (yet, or any more): stop as the signal's default would
            raise SystemExit(128 + signum)
        for kid in kids:
            try:
                kid.send_signal(signum)
            except psutil.NoSuchProcess:
                pass
    return {s: signal.signal(s, forward) for s in FORWARDED}


def start_workers(target: Target, rest: list[str], largs, lo: int, hi: int) -> int:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    worker_env(largs.nproc_per_node)
    # The agent's own log (its config, each failure, a report table) is what made torchrun's output
    # ~45 lines for one mistake; the outcome is said below, once.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    old = forward_signals()
    try:
        elastic_launch(launch_config(largs, lo, hi), sys.executable)("-m", target.module, *rest)
        return 0
    except ChildFailedError as exc:
        return failed_status(target.prog, exc.failures)
    except SignalException as exc:
        print(f"{target.prog}: stopped by {signal.Signals(exc.sigval).name}; the workers were stopped",
              file=sys.stderr, flush=True)
        return 128 + int(exc.sigval)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def failed_status(prog: str, failures: dict) -> int:
    """The launcher's exit status for a failed worker group: the status of the worker that failed on
    its own (not one the agent stopped with a signal after it), lowest rank first."""
    rank, f = min(failures.items(), key=lambda kv: (kv[1].exitcode < 0, kv[0]))
    if f.exitcode in EXPLAINED:
        return f.exitcode                  # the worker said why, in one line of its own
    if f.exitcode < 0:
        try:
            name = signal.Signals(-f.exitcode).name
        except ValueError:
            name = str(-f.exitcode)
        print(f"{prog}: rank {rank} was killed by signal {name}", file=sys.stderr, flush=True)
        return 128 - f.exitcode
    print(f"{prog}: rank {rank} failed with exit status {f.exitcode} (its output is above)", file=sys.stderr,
          flush=True)
    return f.exitcode


# -- the commands -------------------------------------------------------------------------------
def check_pretrain(argv: list[str], world: int) -> None:
    """What a new pretraining run's workers would refuse first: options, config, shards, batch."""
    from train.config import load_config, require_pretraining     # local: the launcher's --help stays torch-free

    args = P.build_parser().parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.resume != "none":
        return          # a resume may take its config from its checkpoint: the workers check the rest
    require_pretraining(cfg, args.config)
    make_loader(cfg, 0, world)     # reads the shard index; a split short of one global batch is refused


def pretrain_parser() -> argparse.ArgumentParser:
    return build_parser()


PRETRAIN = Target(prog="pretrain", module="train.pretrain", parser=pretrain_parser, check=check_pretrain,
                  in_process=lambda argv: "--print-config" in argv)


@command("pretrain")
def main(argv: list[str] | None = None) -> int:
    """cstp-pretrain."""
    return run(PRETRAIN, argv)


if __name__ == "__main__":
    sys.exit(main())
