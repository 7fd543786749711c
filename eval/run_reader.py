"""A pretraining run's RUN/log.jsonl and RUN/config.yaml (train/pretrain.py --out) as cstp-report
(eval/plots.py) reads them: step and event records, each pretext term under today's name, the loss
weights and chance levels of the run's config, the learning-rate schedule rebuilt from it, and the
steady-state throughput. Numbers only; the drawing is eval/plots.py's."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import yaml

from shards.errors import InputError, plural
from shards.input_files import read_input_file
from train.config import config_from_dict
from train.optim import scaled_lr, warmup_cosine
from train.pretext import TASKS, enabled


def current_names(rec: dict) -> dict:
    """A log record with each pretext term under today's name (loss_overlap_s -> loss_overlap_spatial)."""
    for task in TASKS.values():
        for old in task.old_names:
            for prefix in ("loss_", "acc_"):
                if prefix + old in rec:
                    rec[prefix + task.name] = rec.pop(prefix + old)
    return rec


def _records(path: Path) -> list[dict]:
    """The records of a log.jsonl (a half-written last line left out: a run still writing it)."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in out if isinstance(r, dict)]


def read_log(path: Path) -> list[dict]:
    """The step records of a log.jsonl (event records and a half-written last line left out)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a run folder written by train/pretrain.py --out")
    records = [current_names(r) for r in _records(path) if "event" not in r and "step" in r]
    if not records:
        raise InputError(f"{path} holds no step records yet; plot it once the run has logged a step")
    return records


def chance_levels(config: dict) -> dict[str, float]:
    """{term: chance level} of each pretext task the run's config (a dict, as its config.yaml) trains;
    {} for a config that does not read (the plot then has no chance lines)."""
    if not isinstance(config, dict) or not config:
        return {}
    try:
        cfg = config_from_dict(config)
    except InputError:
        return {}
    return {t.name: t.chance(cfg) for t in enabled(cfg)}


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts], float)) if pts else (np.array([]), np.array([]))


def read_events(path: Path) -> list[dict]:
    """The event records of a log.jsonl (start, epoch, end...), in order."""
    return [r for r in _records(path) if "event" in r]


def loss_weights(config: dict) -> dict[str, float]:
    """{term: weight} of the run's config.yaml ``loss`` section (old keys upgraded); {} if unreadable."""
    if not isinstance(config, dict) or not isinstance(config.get("loss"), dict):
        return {}                         # the defaults are not necessarily what this run used
    try:
        return {k: float(v) for k, v in dataclasses.asdict(config_from_dict(config).loss).items()}
    except (InputError, TypeError, AttributeError):
        return {}


def weighted_terms(records: list[dict], weights: dict[str, float]) -> dict[str, np.ndarray]:
    """{term: weight x logged term} of each term with a non-zero weight: the parts whose sum is the
    logged total (train/model.py: total_loss)."""
    terms = sorted(k[5:] for k in records[-1] if k.startswith("loss_"))
    return {t: weights[t] * series(records, f"loss_{t}")[1] for t in terms if weights.get(t)}


def lr_schedule(config: dict, events: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps 1..T, the rate each step ran with) as train/optim.py schedules it, from the config (optim.lr,
    warmup_epochs) and the first start event (global batch, steps per epoch, total); None if unknown."""

    start = next((e for e in events if e.get("event") == "start"), None)
    m = re.search(r"(\d+) steps? per epoch, (\d+) in total", str((start or {}).get("summary", "")))
    optim = (config or {}).get("optim") or {}
    if not m or "global_batch" not in start or "lr" not in optim or "warmup_epochs" not in optim:
        return None
    per_epoch, total = int(m.group(1)), int(m.group(2))
    warmup = int(float(optim["warmup_epochs"]) * per_epoch)
    peak = scaled_lr(float(optim["lr"]), int(start["global_batch"]))
    steps = np.arange(1, total + 1)
    return steps, np.array([peak * warmup_cosine(int(s) - 1, warmup, total) for s in steps])


def steady_state(records: list[dict], events: list[dict]) -> tuple[float, float, str] | None:
    """(first steady step, clips/s, label): the end event's (train/runlog.py: the steps past the first
    10% of the run's last segment), else an estimate from the records past the first 10% of steps."""
    end = next((e for e in reversed(events) if e.get("event") == "end"), None)
    if end and end.get("steady_clips_per_s") is not None:
        return (end["step"] - end["steps_measured"], end["steady_clips_per_s"],
                f"steady state {end['steady_clips_per_s']:.3g} clips/s ({plural(end['steps_excluded'], 'step')} "
                f"excluded)")
    x, rate = series(records, "clips_per_s")
    if len(x) < 2:
        return None
    skip = int(np.ceil(x[-1] * 0.1))                    # train/runlog.py's rule, on whole records
    n = np.diff(np.insert(x, 0, 0))[x > skip]           # steps each record averages
    value = n.sum() / (n / rate[x > skip]).sum()
    return x[x > skip][0] - n[0], value, f"steady state so far {value:.3g} clips/s (run not ended: from the records)"


def read_run_config(run: Path) -> dict:
    """RUN/config.yaml as a dict; {} where the run has none (the plots say they lack it), an
    InputError naming the file where it is there but not a YAML mapping."""
    path = run / "config.yaml"
    if not path.exists():
        return {}
    config = read_input_file(path, "RUN", lambda text: yaml.safe_load(text) or {}, "YAML", errors=(yaml.YAMLError,),
                             hint="train/pretrain.py --out writes it")
    if not isinstance(config, dict):
        raise InputError(f"RUN {path}: expected a mapping of config sections, as train/pretrain.py writes; "
                         f"found a {type(config).__name__}")
    return config
