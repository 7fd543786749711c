"""eval/plots.py (cstp-report): training curves from a real pretraining run's log.jsonl, the demo's
table as bars, and clean failures on a missing or empty log."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from eval.plots import (chance_levels, loss_weights, lr_schedule, main as report, read_events, read_log, series, smooth,
                        steady_state, weighted_terms)
from shards.errors import InputError
from tests.conftest import ROOT
from tests.train.test_pretrain import run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(real_ucf_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert run(real_ucf_shards, out, "train.max_steps=4") == 0
    return out


def is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def test_report_writes_the_training_curves_of_a_real_run(tiny_run, tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"random init": {"R@1": 0.175, "R@5": 0.55, "top-1": 0.275},
                                   "CSTP": {"R@1": 0.55, "R@5": 0.975, "top-1": 0.6}}))
    assert report([str(tiny_run), "--out", str(tmp_path / "p"), "--summary", str(summary)]) == 0
    names = ["loss.png", "accuracy.png", "lr.png", "throughput.png", "demo_table.png"]
    assert all(is_png(tmp_path / "p" / n) for n in names)
    assert capsys.readouterr().out.strip() == "plots: " + ", ".join(str(tmp_path / "p" / n) for n in names)
    # by path, as `python eval/plots.py RUN`, into RUN/plots by default
    r = subprocess.run([sys.executable, "eval/plots.py", str(tiny_run)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert all(is_png(tiny_run / "plots" / n) for n in names[:4])


def test_chance_levels_come_from_the_runs_config(tiny_run):
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    d = cfg["data"]
    assert chance_levels(cfg) == {"rate": 1 / len(d["rates"]), "rotation": 1 / len(d["rotations"]),
                                  "overlap_spatial": 1 / d["n_spatial_overlaps"],
                                  "overlap_temporal": 1 / d["n_temporal_overlaps"]}
    off = {**cfg, "loss": {**cfg["loss"], "rotation": 0.0}}
    assert "rotation" not in chance_levels(off)          # a head the run did not train has no chance line


def test_a_run_of_an_earlier_version_reads_under_todays_names(tmp_path):
    # before the pretext registry: data.n_overlaps for both overlaps, log terms overlap_s / overlap_t
    old = {"data": {"rates": [1, 2, 4, 8], "rotations": [0, 90], "n_overlaps": 5}}
    assert chance_levels(old) == {"rate": 0.25, "rotation": 0.5, "overlap_spatial": 0.2, "overlap_temporal": 0.2}
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0, "loss_overlap_s": 1.6, "acc_overlap_t": 0.25, "acc_rate": 0.5}\n')
    assert read_log(log) == [{"step": 1, "loss": 2.0, "loss_overlap_spatial": 1.6, "acc_overlap_temporal": 0.25,
                              "acc_rate": 0.5}]


def test_event_records_and_a_half_written_line_are_left_out(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"event": "start", "world": 2}\n{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_log(log)] == [1, 2]


@pytest.mark.parametrize("content, msg", [
    (None, "log.jsonl: no such file; give a run folder written by train/pretrain.py --out"),
    ("", "log.jsonl holds no step records yet"),
    ('{"event": "start"}\n', "log.jsonl holds no step records yet"),
])
def test_a_missing_or_empty_log_fails_in_one_line(tmp_path, capsys, content, msg):
    if content is not None:
        (tmp_path / "log.jsonl").write_text(content)
    assert report([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"cstp-report: {tmp_path / 'log.jsonl'}") and msg in err, err
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())
    with pytest.raises(InputError):
        read_log(tmp_path / "log.jsonl")


@pytest.mark.parametrize("content,msg", [
    (b"optim: {lr: [\n", "not valid YAML (while parsing"),
    (b"\xff\xfe\x00", "not valid YAML ('utf-8' codec can't decode"),
    (b"- 1\n- 2\n", "expected a mapping of config sections, as train/pretrain.py writes; found a list"),
])
def test_an_unreadable_config_yaml_fails_in_one_line_naming_it(tmp_path, capsys, content, msg):
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 1.0, "lr": 0.1}\n')
    (tmp_path / "config.yaml").write_bytes(content)
    assert report([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"cstp-report: RUN {tmp_path / 'config.yaml'}: {msg}"), err


def test_a_missing_summary_names_the_flag(tiny_run, tmp_path, capsys):
    assert report([str(tiny_run), "--out", str(tmp_path), "--summary", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err.strip() == f"cstp-report: --summary {tmp_path / 'nope.json'}: no such file; demo/run.py writes it as summary.json"


def test_smooth_is_a_trailing_moving_average():
    y = np.array([1.0, 3, 5, 7])
    assert smooth(y, 1) is y
    assert smooth(y, 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert smooth(y, 10).tolist() == [1.0, 2.0, 3.0, 4.0]


def test_the_weighted_loss_terms_add_up_to_the_logged_total(tiny_run):
    records = read_log(tiny_run / "log.jsonl")
    weights = loss_weights(yaml.safe_load((tiny_run / "config.yaml").read_text()))
    assert weights["contrastive"] == 0.1 and weights["rate"] == 1.0          # configs/tiny_cpu.yaml, the authors'
    parts = weighted_terms(records, weights)
    assert set(parts) == {k for k, w in weights.items() if w}
    np.testing.assert_allclose(sum(parts.values()), series(records, "loss")[1], rtol=1e-5)


def test_a_log_without_a_readable_config_plots_unweighted_terms_and_says_so(tiny_run, tmp_path):
    (tmp_path / "log.jsonl").write_text((tiny_run / "log.jsonl").read_text())
    assert loss_weights({}) == {}
    assert report([str(tmp_path)]) == 0 and is_png(tmp_path / "plots" / "loss.png")


def test_the_lr_plot_rebuilds_the_schedule_from_step_1_and_it_matches_the_log(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    records, events = read_log(tiny_run / "log.jsonl"), read_events(tiny_run / "log.jsonl")
    steps, lr = lr_schedule(config, events)
    # 11 videos / batch 2 = 5 steps an epoch, max_steps 4; warm-up 0.5 epoch = 2 steps, peak 0.5 x 2 / 256
    assert steps.tolist() == [1, 2, 3, 4]
    peak = 0.5 * 2 / 256
    np.testing.assert_allclose(lr[:2], [peak / 2, peak])
    logged = {r["step"] + 1: r["lr"] for r in records if r["step"] < 4}     # the rate the next step runs with
    np.testing.assert_allclose([lr[s - 1] for s in logged], list(logged.values()), rtol=1e-6)


def test_the_steady_state_is_the_end_events_and_estimated_for_a_run_still_going(tiny_run):
    records, events = read_log(tiny_run / "log.jsonl"), read_events(tiny_run / "log.jsonl")
    end = events[-1]
    first, value, label = steady_state(records, events)
    assert (first, value) == (end["step"] - end["steps_measured"], end["steady_clips_per_s"])
    assert f"({end['steps_excluded']} step excluded)" in label or f"({end['steps_excluded']} steps excluded)" in label
    first, value, label = steady_state(records, [e for e in events if e["event"] != "end"])
    assert "run not ended" in label and value > 0 and first >= 1


def test_eval_plots_each_checkpoint_against_a_random_init(tiny_run, real_ucf_shards, tmp_path, capsys):
    assert report([str(tiny_run), "--out", str(tmp_path), "--eval", "--shards", str(real_ucf_shards), "--clips", "1"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    ckpts = sorted(tiny_run.glob("ckpt-*.pt"))
    assert [p["step"] for p in result["points"]] == [None] + [int(c.stem[5:]) for c in ckpts]
    assert all(0 <= p["R@1"] <= 1 and 0 <= p["top1"] <= 1 for p in result["points"])
    assert (result["gallery"], result["queries"]) == (2, 9)                  # split 1 of the eleven clips
    assert is_png(tmp_path / "eval.png")
    assert str(tmp_path / "eval.png") in capsys.readouterr().out
