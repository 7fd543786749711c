"""Run a stage's command with its whole output in the log file and one live line on the console:
the stage, step/total, ETA and the loss, read from the progress bars (tqdm) the command prints."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# tqdm's "  12%|█▎   | 95/770 [00:30<03:30, 3.20step/s, loss=4.213]"
BAR = re.compile(r"(\d+)/(\d+) \[")
LOSS = re.compile(r"loss=([-+0-9.eE]+)")


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class State:
    """What the stage's output has said so far about its progress."""

    t0: float = field(default_factory=time.perf_counter)
    done: int | None = None
    total: int | None = None
    loss: str | None = None
    first: tuple[float, int] | None = None      # (time, done) when this bar was first seen

    def feed(self, text: str, now: float) -> None:
        bars = BAR.findall(text)
        if bars:
            done, total = map(int, bars[-1])
            if total != self.total or self.done is None or done < self.done:
                self.first = (now, done)             # a new bar: ETA starts over
            self.done, self.total = done, total
        losses = LOSS.findall(text)
        if losses:
            self.loss = losses[-1]

    def eta(self, now: float) -> float | None:
        if self.first is None or self.done is None or self.done <= self.first[1]:
            return None
        rate = (self.done - self.first[1]) / max(now - self.first[0], 1e-9)
        return (self.total - self.done) / rate

    def line(self, title: str, now: float, final: bool = False) -> str:
        parts = [f"[{title}]"]
        if self.total:
            parts.append(f"{self.done}/{self.total}")
            eta = self.eta(now)
            if not final:
                parts.append(f"ETA {clock(eta)}" if eta is not None else "ETA ?")
        if self.loss is not None:
            parts.append(f"loss {self.loss}")
        parts.append(f"({clock(now - self.t0)})")
        return "  ".join(parts)


def run_stage(title: str, cmd: list, log: Path, console=sys.stdout, every: float = 0.5, quiet_every: float = 30.0) -> float:
    """Run ``cmd``; its output goes to ``log``, a progress line to ``console`` (redrawn in place on a
    terminal, a new line every ``quiet_every`` seconds elsewhere). Returns the seconds it took;
    a failure raises RuntimeError with the log's last lines."""
    cmd = [str(c) for c in cmd]
    tty = console.isatty()
    state = State()
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, bufsize=0)
        lock = threading.Lock()

        def pump():
            tail = ""
            while chunk := proc.stdout.read(65536):          # unbuffered: whatever has arrived
                f.write(chunk)
                f.flush()
                tail = (tail + chunk.decode(errors="replace"))[-2000:]
                with lock:
                    state.feed(tail[-400:], time.perf_counter())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        last_print = time.perf_counter()
        while reader.is_alive():
            reader.join(every)
            now = time.perf_counter()
            with lock:
                text = state.line(title, now)
            if tty:
                console.write("\r" + text.ljust(100)[:140])
                console.flush()
            elif now - last_print >= quiet_every:
                print(text, file=console, flush=True)
                last_print = now
        rc = proc.wait()
    now = time.perf_counter()
    final = state.line(title, now, final=True)
    print(("\r" if tty else "") + f"{final}  {'done' if rc == 0 else f'FAILED (exit {rc})'}".ljust(100 if tty else 0),
          file=console, flush=True)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError("\n".join(tail))
    return now - state.t0
