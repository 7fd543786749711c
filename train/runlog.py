"""The run's log: log.jsonl (step records, and event records that carry an "event" key) and TensorBoard.

Step metrics stay on the device and are summed there; they are read (one transfer) only when a
record is written, every ``log_every`` steps. Times are taken at the loop's synchronised points, so
clips/s and the data-wait fraction measure what the device did, not what was queued. A resumed run
first drops the records past its checkpoint's step, so every step appears once.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from shards.atomic_files import atomic_write_bytes

LOG = "log.jsonl"


def truncate_log(path: Path, step: int) -> int:
    """Keep the records of steps up to ``step`` (and no torn last line); returns how many were dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:        # a line torn by a killed write
            dropped += 1
            continue
        if isinstance(rec, dict) and rec.get("step", 0) > step:
            dropped += 1
        else:
            kept.append(line)
    atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())
    return dropped


def steady_state(durations: list[float], waits: list[float], clips_per_step: int, skip_fraction: float = 0.1) -> dict:
    """clips/s and data-wait fraction over the steps after the first ``skip_fraction`` of them."""
    skip = math.ceil(len(durations) * skip_fraction) if len(durations) > 1 else 0
    d, w = durations[skip:], waits[skip:]
    total = sum(d)
    return {"steady_clips_per_s": clips_per_step * len(d) / total if total > 0 else None,
            "steady_data_wait": sum(w) / total if total > 0 else None,
            "steps_measured": len(d), "steps_excluded": skip}


class RunLog:
    """Rank 0's log; on other ranks every method does nothing."""

    def __init__(self, out: Path, *, start_step: int, log_every: int, clips_per_step: int,
                 tensorboard: bool, enabled: bool):
        self.enabled, self.log_every, self.clips_per_step = enabled, max(1, int(log_every)), clips_per_step
        self.file = self.writer = None
        self._sum, self._n, self._dur, self._wait = None, 0, 0.0, 0.0
        self.durations: list[float] = []
        self.waits: list[float] = []
        if not enabled:
            return
        truncate_log(out / LOG, start_step)
        self.file = open(out / LOG, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter     # heavy: imported only when asked for

            # purge_step: events past the checkpoint, written before a crash, are dropped by readers
            self.writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)

    def _write(self, rec: dict) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def event(self, name: str, step: int, **fields) -> dict:
        rec = {"event": name, "step": step, "time": time.time(), **fields}
        if self.enabled:
            self._write(rec)
        return rec

    def add_step(self, step: int, epoch: int, metrics: dict[str, torch.Tensor], lr: float,
                 duration: float, wait: float, last: bool = False) -> dict | None:
        """Account one step (``metrics`` on the device, times in seconds between synchronised points);
        writes and returns a record every ``log_every`` steps and at ``last``."""
        if not self.enabled:
            return None
        self.durations.append(duration)
        self.waits.append(wait)
        values = torch.stack([v.detach().float() for v in metrics.values()])
        self._sum = values if self._sum is None else self._sum + values
        self._n, self._dur, self._wait = self._n + 1, self._dur + duration, self._wait + wait
        if step % self.log_every and not last:
            return None
        means = (self._sum / self._n).tolist()
        rec = {"step": step, "epoch": epoch, "time": time.time(), **dict(zip(metrics, means)), "lr": lr,
               "clips_per_s": self.clips_per_step * self._n / max(self._dur, 1e-9),
               "data_wait": self._wait / max(self._dur, 1e-9)}
        self._write(rec)
        if self.writer is not None:
            for k, v in rec.items():
                if k not in ("step", "epoch", "time"):
                    self.writer.add_scalar(k, v, step)
        self._sum, self._n, self._dur, self._wait = None, 0, 0.0, 0.0
        return rec

    def summary(self, step: int) -> dict:
        return self.event("end", step, **steady_state(self.durations, self.waits, self.clips_per_step))

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()
