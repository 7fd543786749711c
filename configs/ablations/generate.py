"""One config per row of the paper's Tables 1-5 (configs/ablations/), the Table 6/7 backbone configs
(configs/cstp_<backbone>_<dataset>.yaml), and the README's table of them and its config-key
reference, all from the one table of rows below (tests/train/test_ablations.py checks they agree).

    python configs/ablations/generate.py           # write every file and the README blocks
    python configs/ablations/generate.py --check   # exit 1 and name what differs

Every ablation is the default config (the paper's full scheme on UCF-101 split 1, R(2+1)D-10,
BYOL, the authors' optimiser) with only what the row changes.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Optional, get_type_hints

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from train.augment import AugmentConfig  # noqa: E402
from shards.sampling import PairConfig  # noqa: E402
from train import config_schema as S  # noqa: E402
from train.methods import METHODS  # noqa: E402
from train.pretext import TASKS  # noqa: E402

ALL_RATES, ALL_ROTATIONS = list(PairConfig().rates), list(PairConfig().rotations)


@dataclasses.dataclass(frozen=True)
class Row:
    table: int
    row: Optional[int]
    what: str
    ucf101: Optional[float]
    hmdb51: Optional[float]
    ctr: bool = False            # contrastive term
    pb: bool = False             # playback-rate prediction
    rot: bool = False            # rotation prediction
    stor_s: bool = False         # spatial overlap-rate prediction
    stor_t: bool = False         # temporal overlap-rate prediction
    pb_aug: bool = True          # playback rates as augmentation (data.rates; [1] when off)
    rot_aug: bool = True         # rotations as augmentation (data.rotations; [0] when off)
    method: str = "byol"
    n_overlaps: Optional[int] = None
    name: str = ""               # file name for the backbone rows (configs/<name>.yaml)
    backbone: str = "r21d_10"
    dataset: str = "ucf101"

    @property
    def path(self) -> str:
        return f"configs/{self.name}.yaml" if self.name else f"configs/ablations/table{self.table}_row{self.row:02d}.yaml"

    @property
    def pretrain(self) -> bool:
        return self.ctr or any(self.tasks.values())

    @property
    def tasks(self) -> dict[str, bool]:
        """Which pretext tasks (train.pretext) the row trains, by task name."""
        return {"rate": self.pb, "rotation": self.rot, "overlap_spatial": self.stor_s, "overlap_temporal": self.stor_t}


def _table1():
    # (PB-rate aug, rotation aug, PB-rate task, rotation task, STOR), UCF-101; rows 1-4 from scratch
    rows = [(0, 0, 0, 0, 0, 60.3), (1, 0, 0, 0, 0, 67.5), (0, 1, 0, 0, 0, 66.9), (1, 1, 0, 0, 0, 71.1),
            (1, 0, 1, 0, 0, 77.2), (1, 1, 1, 0, 0, 78.7), (0, 1, 0, 1, 0, 77.6), (1, 1, 0, 1, 0, 78.5),
            (0, 0, 0, 0, 1, 69.6), (1, 0, 0, 0, 1, 74.1), (1, 1, 0, 0, 1, 76.2)]
    for i, (pa, ra, pb, rot, stor, ucf) in enumerate(rows, 1):
        tasks = [n for n, on in (("PB-rate prediction", pb), ("rotation prediction", rot), ("STOR", stor)) if on]
        augs = "base" + " + PB-rate aug" * pa + " + rotation aug" * ra
        yield Row(1, i, f"{augs}; {' + '.join(tasks) or 'no pretraining (from scratch)'}", ucf, None, False, bool(pb), bool(rot),
                  bool(stor), bool(stor), bool(pa), bool(ra))


def _table2():
    # (contrastive, PB rate, rotation, STOR, UCF-101, HMDB-51), BYOL, every augmentation
    rows = [(0, 0, 0, 0, 71.1, 38.3), (1, 0, 0, 0, 76.6, 45.5), (0, 1, 0, 0, 78.7, 48.2), (0, 0, 1, 0, 78.5, 47.1),
            (0, 0, 0, 1, 76.2, 45.4), (0, 1, 1, 0, 84.1, 53.5), (0, 1, 0, 1, 82.0, 51.7), (0, 0, 1, 1, 81.6, 51.4),
            (1, 1, 0, 0, 81.8, 51.4), (1, 0, 1, 0, 81.5, 51.1), (1, 0, 0, 1, 77.7, 49.5), (0, 1, 1, 1, 85.3, 54.9),
            (1, 1, 1, 0, 84.4, 54.1), (1, 1, 0, 1, 83.1, 53.8), (1, 0, 1, 1, 82.6, 52.7), (1, 1, 1, 1, 85.6, 55.1)]
    for i, (ctr, pb, rot, stor, ucf, hmdb) in enumerate(rows, 1):
        yield Row(2, i, _terms(ctr, pb, rot, stor, "BYOL"), ucf, hmdb, bool(ctr), bool(pb), bool(rot), bool(stor), bool(stor))


def _table3():
    # per method: contrastive alone, + PB rate, + rotation, + STOR (the table's last two lines repeat SimSiam's)
    numbers = {"simclr": [(75.5, 44.3), (80.7, 50.1), (82.9, 52.8), (84.4, 54.0)],
               "moco": [(75.8, 44.8), (81.3, 52.8), (83.5, 53.4), (84.9, 54.3)],
               "byol": [(76.6, 45.5), (81.8, 51.4), (84.4, 54.1), (85.6, 55.1)],
               "simsiam": [(75.2, 44.2), (80.6, 50.3), (82.8, 52.6), (83.9, 53.6)]}
    names = {"simclr": "SimCLR", "moco": "MoCo", "byol": "BYOL", "simsiam": "SimSiam"}
    i = 0
    for method, nums in numbers.items():
        for k, (ucf, hmdb) in enumerate(nums):
            i += 1
            pb, rot, stor = k >= 1, k >= 2, k >= 3
            yield Row(3, i, _terms(1, pb, rot, stor, names[method]), ucf, hmdb, True, pb, rot, stor, stor, method=method)


def _table4():
    nums = [(72.5, 42.5), (72.4, 43.3), (73.9, 44.8), (76.2, 45.4), (75.4, 45.0), (75.5, 44.9)]
    for i, (ucf, hmdb) in enumerate(nums, 1):
        yield Row(4, i, f"STOR with N = {i + 1} candidates, base augmentation", ucf, hmdb, stor_s=True, stor_t=True,
                  pb_aug=False, rot_aug=False, n_overlaps=i + 1)


def _table5():
    rows = [(0, 0, 60.3), (1, 0, 67.8), (0, 1, 66.5), (1, 1, 69.6)]
    for i, (s, t, ucf) in enumerate(rows, 1):
        what = {(0, 0): "from scratch", (1, 0): "spatial overlap only", (0, 1): "temporal overlap only",
                (1, 1): "spatial + temporal overlap"}[(s, t)]
        yield Row(5, i, f"{what}, base augmentation", ucf, None, stor_s=bool(s), stor_t=bool(t), pb_aug=False, rot_aug=False)


def _backbones():
    # Table 6 (fine-tuned, mean of 3 splits); R3D-18 only appears linearly probed (Freeze), after Kinetics
    full = dict(ctr=True, pb=True, rot=True, stor_s=True, stor_t=True)
    for bb, short, label, ucf, k400 in (("r21d_10", "r21d", "R(2+1)D-10", (85.7, 55.3), (87.6, 56.4)),
                                         ("c3d", "c3d", "C3D", (80.8, 48.9), (82.6, 50.2)),
                                         ("s3dg", "s3dg", "S3D-G", (83.6, 53.3), (87.3, 55.7)),
                                         ("r3d_18", "r3d", "R3D-18", (None, None), (70.5, 34.4))):
        retrieval = {"r21d_10": "; Table 7 R@1 51.3 / 21.6", "c3d": "; Table 7 R@1 50.7 / 19.3"}.get(bb, "")
        yield Row(6, None, f"{label}, CSTP on UCF-101{retrieval}", *ucf, **full, name=f"cstp_{short}_ucf101", backbone=bb)
        probe = " (linear probe)" if bb == "r3d_18" else ""
        yield Row(6, None, f"{label}, CSTP on Kinetics-400{probe}", *k400, **full, name=f"cstp_{short}_k400",
                  backbone=bb, dataset="k400")


def _terms(ctr, pb, rot, stor, method) -> str:
    parts = [n for n, on in ((method, ctr), ("PB rate", pb), ("rotation", rot), ("STOR", stor)) if on]
    return " + ".join(parts) or "from scratch"


ROWS: list[Row] = [*_table1(), *_table2(), *_table3(), *_table4(), *_table5(), *_backbones()]


def settings(r: Row) -> dict:
    """What the row changes on the defaults, as the YAML file's sections (None: not written)."""
    rates = ALL_RATES if r.pb_aug else [1]
    rotations = ALL_ROTATIONS if r.rot_aug else [0]
    paper = {"table": r.table, "row": r.row, "what": r.what, "ucf101": r.ucf101, "hmdb51": r.hmdb51}
    if not r.pretrain:
        return {"pretrain": False, "paper": paper, "finetune": {"preset": "base", "rates": rates, "rotations": rotations}}    # the paper's Base augmentation
    k400 = r.dataset == "k400"
    n = {"n_spatial_overlaps": r.n_overlaps, "n_temporal_overlaps": r.n_overlaps} if r.n_overlaps else {}
    # the authors on Kinetics: 128 clips in all over 8 GPUs at lr 0.09, i.e. 0.18 per 256
    big = {"batch_size": 16, "num_workers": 8} if k400 else {}
    model = {k: v for k, v, default in (("backbone", r.backbone, "r21d_10"), ("method", r.method, "byol")) if v != default}
    ctr = S.config_class()().loss.contrastive
    loss = {"contrastive": ctr if r.ctr else 0.0, **{k: t.weight if r.tasks.get(k) else 0.0 for k, t in TASKS.items()}}
    out = {"paper": paper, "data": {"split": "1", "rates": rates, "rotations": rotations, **n, **big},
           "model": model or None, "loss": loss, "optim": {"lr": 0.18} if k400 else None,
           "train": {"out": f"runs/{Path(r.path).stem}"}}
    return {k: v for k, v in out.items() if v is not None}


def render_config(r: Row) -> str:
    where = "Kinetics-400 (split 1's train rows)" if r.dataset == "k400" else "UCF-101 split 1 (train videos)"
    head = ["# Generated by configs/ablations/generate.py: edit its table of rows, then re-run it.",
            f"# Paper Table {r.table}" + (f" row {r.row}" if r.row else "") + f": {r.what}.",
            f"# Pretraining on {where}; every key not here is the default (--print-config shows them all)."
            if r.pretrain else "# No pretraining: fine-tune from scratch with eval/finetune.py --config THIS --ckpt none."]
    if r.pretrain:
        head.append(f"# Pass the shard set: data.shards=/shards/{r.dataset}")
    body = [f"{k}: {_flow(v)}" for k, v in settings(r).items()]
    return "\n".join(head + body) + "\n"


def _flow(v) -> str:
    """``v`` as one line of YAML (a scalar's document-end marker dropped)."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _cell(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def ablation_table() -> str:
    lines = ["| paper | what | config | UCF-101 | HMDB-51 |", "|---|---|---|---|---|"]
    for r in ROWS:
        where = f"Table {r.table}" + (f" row {r.row}" if r.row else "")
        lines.append(f"| {where} | {r.what} | `{r.path}` | {_cell(r.ucf101)} | {_cell(r.hmdb51)} |")
    return "\n".join(lines)


def field_doc(cls: type, f: dataclasses.Field) -> str:
    """A field's meaning: its ``help`` metadata, else the comment on its line in the source."""
    if f.metadata.get("help"):
        return f.metadata["help"]
    m = re.search(rf"^\s*{f.name}\s*:[^\n#]*#\s*(.+)$", inspect.getsource(cls), re.M)
    return m.group(1).strip() if m else ""


def _default_text(v) -> str:
    if isinstance(v, tuple):
        v = list(v)
    return f"`{_flow(v)}`"


def _type_text(t) -> str:
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


def _allowed(rule) -> str:
    return rule.allowed.replace("|", "\\|") if rule else ""


def key_reference() -> str:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]

    def section(cls, prefix: str, rules: dict | None = None):
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            t, default = hints[f.name], getattr(cls(), f.name)
            if dataclasses.is_dataclass(t):
                section(t, f"{prefix}{f.name}.", S.AUGMENT_RULES if t is AugmentConfig else None)
                continue
            rule = rules.get(f.name) if rules is not None else f.metadata.get("rule")
            lines.append(f"| `{prefix}{f.name}` | {_type_text(t)} | {_default_text(default)} | {_allowed(rule)} | "
                         f"{field_doc(cls, f)} |")

    section(S.config_class(), "")
    for name in sorted(METHODS):
        cls = METHODS[name].Params
        for f in dataclasses.fields(cls):
            t = get_type_hints(cls)[f.name]
            # train.config.method_params: every number is a size, a temperature or an EMA rate
            numeric = t in (int, float, Optional[int], Optional[float])
            allowed = "" if not numeric else "in (0, 1]" if "momentum" in f.name else "> 0"
            lines.append(f"| `model.method_params.{f.name}` ({name}) | {_type_text(t)} | "
                         f"{_default_text(getattr(cls(), f.name))} | {allowed} | {field_doc(cls, f)} |")
    return "\n".join(lines)


BLOCKS = {"ablation-table": ablation_table, "config-keys": key_reference}


def render_readme(text: str) -> str:
    for marker, fn in BLOCKS.items():
        start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
        if start not in text or end not in text:
            raise SystemExit(f"README.md: markers {start} ... {end} not found")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{fn()}\n{end}{tail}"
    return text


def outputs() -> dict[Path, str]:
    """Every generated file (relative to the project root) and its text."""
    out = {Path(r.path): render_config(r) for r in ROWS}
    out[Path("README.md")] = render_readme((ROOT / "README.md").read_text())
    return out


def main(argv: list[str]) -> int:
    files = outputs()
    stale = [p for p, text in files.items() if not (ROOT / p).is_file() or (ROOT / p).read_text() != text]
    extra = sorted(set((ROOT / "configs/ablations").glob("*.yaml")) - {ROOT / p for p in files})
    if "--check" in argv:
        for p in stale:
            print(f"out of date: {p}")
        for p in extra:
            print(f"not generated (delete it or add its row): {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    for p in stale:
        (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / p).write_text(files[p])
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
