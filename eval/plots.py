"""Pictures of a pretraining run (and of the demo's table), with matplotlib.

    cstp-report runs/cstp                               # PNGs under runs/cstp/plots/
    python eval/plots.py out/demo/run --summary out/demo/summary.json --out out/demo/plots

From RUN/log.jsonl (train/pretrain.py): loss.png (the total and each loss term), accuracy.png (each
pretext head against its chance level, as its task in train.pretext declares it for RUN/config.yaml),
lr.png and throughput.png (clips/s and the fraction of each step spent waiting for data). With
--summary (the demo's summary.json): demo_table.png, the demo's table as bars. Runs of earlier
versions read too (their terms' old names and config keys are mapped to today's).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

from shards.errors import InputError, command, parser, read_input_file
from train.config import config_from_dict
from train.pretext import TASKS, enabled

PROG = "cstp-report"


def current_names(rec: dict) -> dict:
    """A log record with each pretext term under today's name (loss_overlap_s -> loss_overlap_spatial)."""
    for task in TASKS.values():
        for old in task.old_names:
            for prefix in ("loss_", "acc_"):
                if prefix + old in rec:
                    rec[prefix + task.name] = rec.pop(prefix + old)
    return rec


def read_log(path: Path) -> list[dict]:
    """The step records of a log.jsonl (event records and a half-written last line left out)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a run folder written by train/pretrain.py --out")
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue                 # a run still writing its last line
        if isinstance(rec, dict) and "event" not in rec and "step" in rec:
            records.append(current_names(rec))
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


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if window <= 1:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    n = np.minimum(np.arange(1, len(y) + 1), window)
    return (c[1:] - c[np.arange(1, len(y) + 1) - n]) / n


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts], float)) if pts else (np.array([]), np.array([]))


def _figure(title: str, rows: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(7, 2.6 * rows + 0.6), squeeze=False, sharex=True)
    fig.suptitle(title, fontsize=11)
    return fig, axes[:, 0]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curve(ax, x, y, label: str, window: int, colour=None):
    line, = ax.plot(x, smooth(y, window), label=label, color=colour, linewidth=1.6)
    if window > 1:                                   # the raw values, faint, behind the average
        ax.plot(x, y, color=line.get_color(), alpha=0.2, linewidth=0.8)


def training_plots(run: Path, out: Path, window: int = 0) -> list[Path]:
    records = read_log(run / "log.jsonl")
    cfg_path = run / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    window = window or max(1, len(records) // 40)
    note = (f"{run.name}: {int(records[-1]['step'])} steps, {len(records)} records"
            + (f", curves averaged over {window} records" if window > 1 else ""))
    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, (ax,) = _figure(f"loss ({note})")
    for key in ["loss"] + sorted(k for k in records[-1] if k.startswith("loss_")):
        _curve(ax, *series(records, key), "total" if key == "loss" else key[5:], window)
    ax.set(xlabel="step", ylabel="loss")
    ax.legend(fontsize=8, ncol=3)
    written.append(_save(fig, out / "loss.png"))

    heads = sorted(k[4:] for k in records[-1] if k.startswith("acc_"))
    if heads:
        chance = chance_levels(config)
        fig, (ax,) = _figure(f"pretext accuracy, dashed: chance ({note})")
        for head in heads:
            colour = f"C{heads.index(head)}"
            _curve(ax, *series(records, f"acc_{head}"), head, window, colour)
            if head in chance:
                ax.axhline(chance[head], color=colour, linestyle="--", linewidth=1)
        ax.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=8, ncol=4)
        written.append(_save(fig, out / "accuracy.png"))

    fig, (ax,) = _figure("learning rate")
    ax.plot(*series(records, "lr"), linewidth=1.6)
    ax.set(xlabel="step", ylabel="lr")
    written.append(_save(fig, out / "lr.png"))

    fig, (top, bottom) = _figure(f"throughput ({note})", rows=2)
    _curve(top, *series(records, "clips_per_s"), "clips/s", window)
    top.set(ylabel="clips / s")
    _curve(bottom, *series(records, "data_wait"), "data wait", window, "C3")
    bottom.set(xlabel="step", ylabel="share of step\nwaiting for data", ylim=(0, 1.02))
    written.append(_save(fig, out / "throughput.png"))
    return written


def read_summary(summary: Path) -> dict:
    rows = read_input_file(summary, "--summary", json.loads, "JSON", hint="demo/run.py writes it as summary.json")
    if not isinstance(rows, dict) or not rows or not all(isinstance(v, dict) for v in rows.values()):
        raise InputError(f"--summary {summary}: expected {{model: {{metric: value}}}}, as demo/run.py writes")
    return rows


def summary_plot(rows: dict, out: Path) -> Path:
    """The demo's table ({model: {metric: fraction}}) as grouped bars, in percent."""
    models, metrics = list(rows), list(next(iter(rows.values())))
    fig, (ax,) = _figure("the demo's table: retrieval (R@k) and linear probe (top-1)")
    width = 0.8 / len(models)
    x = np.arange(len(metrics))
    for i, m in enumerate(models):
        vals = [100 * rows[m].get(k, np.nan) for k in metrics]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, label=m)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(x, metrics)
    ax.set(ylabel="%", ylim=(0, 110))
    ax.legend(fontsize=9)
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / "demo_table.png")


def build_parser():
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument("run", help="pretraining run folder (holds log.jsonl and config.yaml)")
    p.add_argument("--out", help="folder for the PNGs (default: RUN/plots)")
    p.add_argument("--summary", help="the demo's summary.json: also plot its table")
    p.add_argument("--smooth", type=int, default=0, help="moving-average window in steps (0: about 1/40 of the run)")
    return p


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = Path(args.run)
    out = Path(args.out) if args.out else run / "plots"
    rows = read_summary(Path(args.summary)) if args.summary else None     # a bad file fails before any work
    written = training_plots(run, out, args.smooth)
    if rows:
        written.append(summary_plot(rows, out))
    print(f"plots: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
