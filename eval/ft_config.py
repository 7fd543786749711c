"""Fine-tuning's augmentation options, from the command line or from the ``finetune:`` section of an
ablation YAML (configs/ablations/, the paper's Table 1 rows trained from scratch):

    finetune: {rates: [1, 2, 4, 8], rotations: [0]}

Only that section is read, with plain yaml (the rest of the file is the pretraining config).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from shards.errors import InputError, read_input_file


def _rates(values: list) -> list[int]:
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError("playback rates are whole numbers of 1 or more, e.g. 1,2,4,8")
    return values


def _rotations(values: list) -> list[int]:
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v % 90 for v in values):
        raise ValueError("rotations are multiples of 90 degrees, e.g. 0,90,180,270")
    return values


# key (and flag name) -> the check of its list of values
CHECKS = {"rates": _rates, "rotations": _rotations}


def int_list(key: str):
    """An argparse ``type`` for a comma-separated list of ``key`` values, checked."""
    def parse(text: str) -> list[int]:
        try:
            return CHECKS[key]([int(x) for x in text.split(",") if x.strip()])
        except ValueError as exc:
            raise InputError(f"--{key} {text}: {exc}") from None
    return parse


def read_finetune_section(path: str | Path) -> dict:
    """The checked ``finetune:`` section of ``path`` as {key: list of ints}."""
    doc = read_input_file(path, "--config", yaml.safe_load, "YAML", errors=(yaml.YAMLError,))
    section = doc.get("finetune") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise InputError(f"--config {path} has no finetune: section; give one, e.g. finetune: {{rates: [1, 2], rotations: [0]}}")
    unknown = sorted(set(section) - set(CHECKS))
    if unknown:
        raise InputError(f"--config {path}: unknown key finetune.{unknown[0]}; the keys are {', '.join(CHECKS)}")
    out = {}
    for key, values in section.items():
        values = values if isinstance(values, list) else [values]
        try:
            out[key] = CHECKS[key](values)
        except ValueError as exc:
            raise InputError(f"--config {path}: finetune.{key} {values}: {exc}") from None
    return out
