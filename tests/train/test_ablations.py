"""configs/ablations/generate.py: the committed configs and README blocks are what it generates, and
the generated configs say what the paper's rows say."""
from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections import Counter

from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from train.config import ConfigError, load_config, require_pretraining
from train.model import CSTPModel

spec = importlib.util.spec_from_file_location("ablations_generate", ROOT / "configs/ablations/generate.py")
gen = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gen        # dataclasses look their module up there
spec.loader.exec_module(gen)


def test_committed_files_are_what_the_generator_writes():
    r = subprocess.run([sys.executable, "configs/ablations/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_readme_blocks_are_generated():
    readme = (ROOT / "README.md").read_text()
    assert gen.render_readme(readme) == readme
    assert "`configs/ablations/table2_row16.yaml` | 85.6 | 55.1 |" in readme
    assert "| `loss.contrastive` | float | `0.1` | >= 0 |" in readme
    assert "| `augment.hue` | float | `0.1` | in [0, 0.5] |" in readme


def test_one_config_per_row_of_tables_1_to_5_and_the_backbone_configs():
    assert Counter(r.table for r in gen.ROWS if r.table <= 5) == {1: 11, 2: 16, 3: 16, 4: 6, 5: 4}
    names = {r.name for r in gen.ROWS if r.table == 6}
    assert names == {f"cstp_{b}_{d}" for b in ("c3d", "s3dg", "r21d", "r3d") for d in ("ucf101", "k400")}
    assert len({r.path for r in gen.ROWS}) == len(gen.ROWS)
    assert not list((ROOT / "configs").glob("ablation_*.yaml"))


def cfg_of(r):
    return load_config(str(ROOT / r.path), ["data.shards=x"])


@pytest.mark.parametrize("row", gen.ROWS, ids=lambda r: r.path)
def test_each_config_is_its_row(row):
    cfg = cfg_of(row)
    p = cfg.paper
    assert (p.table, p.row, p.ucf101, p.hmdb51) == (row.table, row.row, row.ucf101, row.hmdb51)
    if not row.pretrain:
        with pytest.raises(ConfigError, match=rf"{row.path} is Table {row.table} row {row.row} .*--ckpt none"):
            require_pretraining(cfg, row.path)
        f = SimpleNamespace(**cfg.finetune)       # eval/ft_config.py is its schema; here it is the file's
        assert f.preset == "base" and f.rates == (gen.ALL_RATES if row.pb_aug else [1])
        assert f.rotations == (gen.ALL_ROTATIONS if row.rot_aug else [0])
        return
    d = cfg.data
    assert d.split == "1" and cfg.model.method == row.method and cfg.model.backbone == row.backbone
    assert d.rates == (gen.ALL_RATES if row.pb_aug else [1])
    assert d.rotations == (gen.ALL_ROTATIONS if row.rot_aug else [0])
    on = {k: v > 0 for k, v in dataclasses.asdict(cfg.loss).items()}
    assert on == {"contrastive": row.ctr, "rate": row.pb, "rotation": row.rot,
                  "overlap_spatial": row.stor_s, "overlap_temporal": row.stor_t}


def test_table1_rows_1_to_4_are_trained_from_scratch_with_the_augmentation_their_columns_say():
    rows = {r.row: cfg_of(r) for r in gen.ROWS if r.table == 1}
    assert all(not rows[i].pretrain for i in (1, 2, 3, 4)) and all(rows[i].pretrain for i in range(5, 12))
    assert [(rows[i].finetune["rates"], rows[i].finetune["rotations"]) for i in (1, 2, 3, 4)] == [
        ([1], [0]), (gen.ALL_RATES, [0]), ([1], gen.ALL_ROTATIONS), (gen.ALL_RATES, gen.ALL_ROTATIONS)]
    assert rows[10].data.rates == gen.ALL_RATES and rows[10].loss.rate == 0     # rates as augmentation only


def test_table3_byol_rows_are_table2_rows_and_table4_varies_only_n():
    def setup(r):
        c = cfg_of(r)
        return (c.data, c.model, c.loss)
    t2 = {r.row: setup(r) for r in gen.ROWS if r.table == 2}
    t3 = {r.row: setup(r) for r in gen.ROWS if r.table == 3}
    assert [t3[i] for i in (9, 10, 11, 12)] == [t2[i] for i in (2, 9, 13, 16)]
    t4 = [cfg_of(r) for r in gen.ROWS if r.table == 4]
    assert [(c.data.n_spatial_overlaps, c.data.n_temporal_overlaps) for c in t4] == [(n, n) for n in range(2, 8)]
    assert all(c.data.rates == [1] and c.data.rotations == [0] for c in t4)


def test_kinetics_configs_train_on_split_1():
    for r in gen.ROWS:
        if r.dataset == "k400":
            assert cfg_of(r).data.split == "1"


def test_a_stor_only_row_builds_only_the_overlap_heads():
    row = next(r for r in gen.ROWS if r.table == 5 and r.row == 2)
    cfg = load_config(str(ROOT / row.path), ["data.shards=x", "model.width=0.125",
                                             "model.method_params={proj_dim: 8, hidden_dim: 8}"])
    assert list(CSTPModel(cfg).heads) == ["overlap_spatial"]
