"""What a pretraining run starts with, shared by the run (train/pretrain_run.py), the launcher's
check in its own process (train/launch.py) and the benches: the loader a config describes, and the
one summary line rank 0 prints at start. Torch-free at import, so commands' --help stays fast."""
from __future__ import annotations

import sys

from shards.errors import plural


def make_loader(cfg, rank: int, world: int):
    from shards.stream import PairLoader, StreamConfig     # local: pretrain --help stays torch-free

    d = cfg.data
    split = None if str(d.split) == "all" else str(d.split)
    sc = StreamConfig(d.shards, batch_size=d.batch_size, split=split,
                      seed=cfg.train.seed, shuffle_buffer=d.shuffle_buffer, out_size=(d.out_size, d.out_size),
                      pair=d.pair, skip_errors=d.skip_errors, max_skip_fraction=d.max_skip_fraction,
                      io_timeout=d.io_timeout, io_retries=d.io_retries, decode=d.decode)
    # the loop is done with a batch when it asks for the next: no copy out of the workers' ring
    return PairLoader(sc, num_workers=d.num_workers, rank=rank, world_size=world, lend_batches=True)


def split_phrase(split) -> str:
    if str(split) == "all":
        return "every video of the shard set (data.split=all; data.split=1 trains on split 1's train part)"
    return f"the train part of split {split} (data.split={split}; data.split=all trains on every video)"


def left_out_phrase(too_short: list[str], need: int, show: int = 3) -> str:
    """' (N left out: shorter than the NEED frames a clip pair needs: first few)', '' when none is."""
    if not too_short:
        return ""
    names = ", ".join(too_short[:show]) + (", ..." if len(too_short) > show else "")
    return f" ({len(too_short)} left out, shorter than the {need} frames a clip pair needs: {names})"


def start_summary(cfg, videos: int, steps_per_epoch: int, total: int, start: int, world: int,
                  device, compiled: bool, channels_last: bool, left_out: str = "") -> str:
    """``left_out``: :func:`left_out_phrase` of the videos of the split the loader cannot use."""
    batch = cfg.data.batch_size
    precision = "bf16 autocast" if device.type == "cuda" and cfg.train.bf16 else "fp32"
    return (f"training on {split_phrase(cfg.data.split)}: {plural(videos, 'video')}{left_out}, "
            f"{plural(steps_per_epoch * batch * world, 'pair')} per epoch; {plural(steps_per_epoch, 'step')} per epoch, "
            f"{total} in total{f' (from step {start})' if start else ''}; world size {world}, "
            f"global batch {batch * world} ({world} x {batch}); device {device}, {precision}, "
            f"compile {'on' if compiled else 'off'}, channels_last {'on' if channels_last else 'off'}")


def say(msg: str, rank: int) -> None:
    if rank == 0:
        print(f"pretrain: {msg}", file=sys.stderr, flush=True)
