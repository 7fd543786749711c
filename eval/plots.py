"""Pictures of a pretraining run (and of the demo's table), with matplotlib.

    cstp-report runs/cstp                               # PNGs under runs/cstp/plots/
    cstp-report runs/cstp --eval                        # and R@1 / probe top-1 of each checkpoint
    python eval/plots.py out/demo/run --summary out/demo/summary.json --out out/demo/plots

From RUN/log.jsonl (train/pretrain.py): loss.png (the weighted terms, loss.* of RUN/config.yaml,
stacked to the total), accuracy.png (each pretext head against its chance level), lr.png (the rate
of every step from step 1, rebuilt from the config and checked against the logged rates),
throughput.png (clips/s with the steady state marked, and the share of each step spent waiting for
data). --summary (the demo's summary.json): demo_table.png. --eval: eval.png and eval.json
(eval/figures.py). Runs of earlier versions read too (old term names and config keys mapped):
eval/run_reader.py reads the log and the config, this module draws.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):        # run by path: import this checkout's packages, not eval/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from shards.errors import InputError, command, parser, plural  # noqa: E402
from shards.input_files import read_input_file  # noqa: E402
from eval.figures import add_eval_args, checkpoint_curve  # noqa: E402
from eval.run_reader import (chance_levels, loss_weights, lr_schedule, read_events, read_log,  # noqa: E402
                             read_run_config, series, steady_state, weighted_terms)

PROG = "cstp-report"


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if window <= 1:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    n = np.minimum(np.arange(1, len(y) + 1), window)
    return (c[1:] - c[np.arange(1, len(y) + 1) - n]) / n


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


def loss_plot(records: list[dict], config: dict, note: str, window: int, out: Path) -> Path:
    weights = loss_weights(config)
    parts = weighted_terms(records, weights) if weights else {}
    x, total = series(records, "loss")
    if parts and all(len(v) == len(total) for v in parts.values()):
        fig, (ax,) = _figure(f"loss: weighted terms (loss.* of config.yaml) stacked to the total\n({note})")
        ax.stackplot(x, *[smooth(v, window) for v in parts.values()], alpha=0.75,
                     labels=[f"{t} x {weights[t]:g}" for t in parts])
        ax.plot(x, smooth(total, window), color="black", linewidth=1.6, label="total")
    else:                                   # no readable config: the terms as logged, and said so
        fig, (ax,) = _figure(f"loss: total and terms, terms UNWEIGHTED (no readable config.yaml)\n({note})")
        for key in ["loss"] + sorted(k for k in records[-1] if k.startswith("loss_")):
            _curve(ax, *series(records, key), "total" if key == "loss" else key[5:], window)
    ax.set(xlabel="step", ylabel="loss")
    ax.legend(fontsize=8, ncol=3)
    return _save(fig, out / "loss.png")


def lr_plot(records: list[dict], config: dict, events: list[dict], out: Path) -> Path:
    x, y = series(records, "lr")
    x = x + 1                # a record's lr is the scheduler's after its step: the rate of the next step
    sched = lr_schedule(config, events)
    if sched is not None:
        x, y = x[x <= sched[0][-1]], y[x <= sched[0][-1]]     # the rate after the last step is never used
        if not np.allclose(np.interp(x, *sched), y, rtol=1e-4, atol=0):
            sched = None                  # the log disagrees with the rebuilt schedule: show only what was logged
    fig, (ax,) = _figure("learning rate of each step" + ("" if sched is not None else " (as logged)"))
    if sched is not None:
        ax.plot(*sched, linewidth=1.6, label="schedule (config.yaml; checked against the log)")
    ax.plot(x, y, "o", markersize=3, label="logged")
    ax.set(xlabel="step", ylabel="lr", xlim=(0, None))
    ax.legend(fontsize=8)
    return _save(fig, out / "lr.png")


def throughput_plot(records: list[dict], events: list[dict], note: str, window: int, out: Path) -> Path:
    fig, (top, bottom) = _figure(f"throughput\n({note})", rows=2)
    _curve(top, *series(records, "clips_per_s"), "clips/s", window)
    steady = steady_state(records, events)
    if steady:
        first, value, label = steady
        top.axvspan(first, records[-1]["step"], color="C2", alpha=0.12, label="steady-state steps")
        top.axhline(value, color="C2", linestyle="--", linewidth=1.2, label=label)
    top.set(ylabel="clips / s", ylim=(0, None))
    top.legend(fontsize=8)
    _curve(bottom, *series(records, "data_wait"), "data wait", window, "C3")
    bottom.set(xlabel="step", ylabel="share of step\nwaiting for data", ylim=(0, 1.02))
    return _save(fig, out / "throughput.png")


def accuracy_plot(records: list[dict], config: dict, note: str, window: int, out: Path) -> Path | None:
    heads = sorted(k[4:] for k in records[-1] if k.startswith("acc_"))
    if not heads:
        return None
    chance = chance_levels(config)
    fig, (ax,) = _figure(f"pretext accuracy, dashed: chance\n({note})")
    for i, head in enumerate(heads):
        _curve(ax, *series(records, f"acc_{head}"), head, window, f"C{i}")
        if head in chance:
            ax.axhline(chance[head], color=f"C{i}", linestyle="--", linewidth=1)
    ax.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8, ncol=4)
    return _save(fig, out / "accuracy.png")


def training_plots(run: Path, out: Path, window: int = 0) -> list[Path]:
    records = read_log(run / "log.jsonl")
    events = read_events(run / "log.jsonl")
    config = read_run_config(run)
    window = window or max(1, len(records) // 40)
    note = (f"{run.name}: {plural(int(records[-1]['step']), 'step')}, {plural(len(records), 'record')}"
            + (f", curves averaged over {window} records" if window > 1 else ""))
    out.mkdir(parents=True, exist_ok=True)
    written = [loss_plot(records, config, note, window, out), accuracy_plot(records, config, note, window, out),
               lr_plot(records, config, events, out), throughput_plot(records, events, note, window, out)]
    return [p for p in written if p is not None]


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
    add_eval_args(p)
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
    if args.eval:
        written += checkpoint_curve(run, out, read_run_config(run), args)
    print(f"plots: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
