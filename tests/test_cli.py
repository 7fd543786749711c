"""What every command shares at its door: usage lines that name the command as typed, help that
shows each real default once, a fast --help, an unknown config key that suggests the close one, and
counts in the singular when they are 1."""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shards.errors import plural
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
# module -> the console script that runs it (pyproject.toml [project.scripts])
COMMANDS = {"preprocess.build_shards": "cstp-build-shards", "preprocess.submit": "dask-submit",
            "shards.verify": "cstp-verify", "train.pretrain": "cstp-pretrain", "eval.retrieval": "cstp-retrieval",
            "eval.linear_probe": "cstp-linear-probe", "eval.finetune": "cstp-finetune", "eval.plots": "cstp-report"}


def _help_blocks(p: argparse.ArgumentParser) -> dict[argparse.Action, str]:
    fmt = p._get_formatter()
    return {a: fmt._expand_help(a) if a.help else "" for a in p._actions}


class _Captured(Exception):
    pass


def command_parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The module's parser: its build_parser(), or the one its main() parses with."""
    mod = importlib.import_module(module)
    if hasattr(mod, "build_parser"):
        return mod.build_parser()

    def capture(self, *a, **k):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Captured) as exc:
        mod.main(["--help"])
    return exc.value.args[0]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_shows_each_real_default_once_and_none_for_required_options_or_flags(module, monkeypatch):
    p = command_parser(module, monkeypatch)
    for action, text in _help_blocks(p).items():
        if action.help in (None, argparse.SUPPRESS):
            continue
        shown = text.lower().count("default")
        meaningful = not (action.required or action.default in (None, False, [], ()) or
                          action.default is argparse.SUPPRESS)
        assert "(default: None)" not in text and "(default: False)" not in text, (module, text)
        assert shown <= 1 + ("default is" in text), (module, text)        # one "(default: x)", not two
        if meaningful:
            assert shown >= 1, f"{module} {action.option_strings}: its default {action.default!r} is not shown"


@pytest.mark.parametrize("module, script", COMMANDS.items())
def test_usage_names_the_console_script_it_was_run_through(module, script):
    r = subprocess.run([str(BIN / script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stdout.startswith(f"usage: {script} "), r.stdout[:200] + r.stderr


def test_pretrain_help_does_not_import_torch():
    # `cstp-pretrain --help` answers in about 0.1 s; torch's import alone takes seconds
    code = ("import sys; from train.pretrain import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout + r.stderr


@pytest.mark.parametrize("override, suggestion", [
    ("train.lr=0.1", "did you mean optim.lr?"),             # a key in the wrong section
    ("optim.lrr=0.1", "did you mean optim.lr?"),            # a typo
    ("data.batchsize=3", "did you mean data.batch_size?"),
    ("optm.lr=0.1", "did you mean optim?"),                 # a misspelt section
    ("loss.rotate=1", "did you mean loss.rate or loss.rotation?"),
])
def test_an_unknown_config_key_suggests_the_close_one(override, suggestion, capsys):
    from train.pretrain import main as pretrain

    assert pretrain(["--print-config", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and suggestion in err and "valid keys here" in err, err


def test_a_key_with_nothing_close_gets_no_suggestion():
    from train.config import ConfigError, load_config

    with pytest.raises(ConfigError) as exc:
        load_config(None, ["train.zzzzzz=1"])
    assert "did you mean" not in str(exc.value)


def test_counts_are_singular_when_they_are_one():
    assert [plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    assert plural(1, "query", "queries") == "1 query" and plural(3, "query", "queries") == "3 queries"


def test_split_is_one_name_and_splits_still_reads():
    from eval.finetune import build_parser as ft
    from eval.linear_probe import build_parser as lp
    from eval.retrieval import build_parser as ret

    base = ["--ckpt", "none", "--shards", "x"]
    assert ret().parse_args([*base, "--split", "2"]).split == "2"
    for p in (lp(), ft()):
        assert p.parse_args([*base, "--split", "1,2"]).splits == "1,2"
        assert p.parse_args([*base, "--splits", "3"]).splits == "3"          # the earlier name, kept
