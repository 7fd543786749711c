"""Linear evaluation (the paper's Table 6, "Freeze" rows): a frozen backbone, a classifier on its features.

    python eval/linear_probe.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --splits 1,2,3
    python eval/linear_probe.py --protocol full-batch --ckpt ... --shards ...          # minutes, not hours

--protocol authors (the default): the authors' ft_fc path, i.e. eval/finetune.py with the backbone's
weights frozen: augmented training clips 4 frames apart, the L2 + BatchNorm1d + Linear head, SGD,
ReduceLROnPlateau, the authors' test clips; every setting is a key of the fine-tune config
(--config, key=value, --print-config). The frozen backbone's batch norm runs in train mode as theirs
(finetune.frozen.bn=eval keeps its running statistics).

--protocol full-batch: features of --clips evenly spaced centre clips per video, extracted once with
the backbone in eval mode and cached (keyed by the checkpoint's content, the feature settings and the
shard set); a linear classifier on standardised features, full-batch AdamW; a test video's
prediction averages its clips' logits. Results per split and their mean go to linear_probe.json/.txt.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not eval/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import eval  # noqa: E402,F401  before torch: OpenMP's threads wait asleep (train/threads.py, passive_wait)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from eval.classify import split_rows, video_accuracy  # noqa: E402
from eval.feature_cache import cache_path, model_identity, shard_identity  # noqa: E402
from eval.ckpt_source import NONE, load_model, resolve_path, settle  # noqa: E402
from eval.features import add_model_args, check_crop, extract, given  # noqa: E402
from eval.finetune import SHORTHAND, add_config_args, parse, run  # noqa: E402
from eval.figures import logit_figures  # noqa: E402
from eval.report import table, write_results  # noqa: E402
from shards.errors import InputError, command, parser  # noqa: E402
from shards.random_access import FrameReader  # noqa: E402
from train.threads import set_threads  # noqa: E402

PROG = "linear_probe.py"


PROTOCOLS = ("authors", "full-batch")
# full-batch's own settings where the authors' protocol has a config key of the same flag
FULL_BATCH = {"optim.epochs": 100, "optim.lr": 1e-3, "optim.weight_decay": 1e-4, "clips.clip_len": None,
              "clips.crop": None, "clips.short_side": None, "seed": 0}


def build_parser():
    p = parser(PROG, __doc__.split("\n\n")[0])
    add_model_args(p, required=False, clip_options=False)
    p.add_argument("--protocol", choices=PROTOCOLS, default="authors",
                   help="authors: the frozen backbone path of main_ft_mp.py (ft_fc); full-batch: cached features, "
                        "one full-batch AdamW linear classifier (fast)")
    p.add_argument("--split", "--splits", dest="splits", default="1", help="split(s), comma-separated, e.g. 1,2,3")
    p.add_argument("--cache", default="runs/eval/cache", help="full-batch: folder for cached features")
    add_config_args(p, {**SHORTHAND, "--weight-decay": ("optim.weight_decay", float)})
    return p


def full_batch_args(args) -> None:
    """The full-batch protocol's settings: the flags given, else its defaults (not the fine-tune config's)."""
    for key, default in FULL_BATCH.items():
        setattr(args, key.rsplit(".", 1)[-1], getattr(args, key, default))
    if args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: the classifier needs at least 1 step; the default is 100")


def train_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, epochs: int, lr: float, wd: float, seed: int):
    """A linear classifier on standardised features, full-batch AdamW (features fit in memory)."""
    g = torch.Generator().manual_seed(seed)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True) + 1e-6
    layer = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=g)
        layer.bias.zero_()
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=wd)
    xs = (x - mean) / std
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(layer(xs), y).backward()
        opt.step()
    return lambda f: layer((f - mean) / std)


def cached_features(args, reader, backbone, rows: np.ndarray) -> np.ndarray:
    """[V, clips, D] features of ``rows``, from the cache when the same model, settings and shards made them."""
    width = given(args, "width")
    model = model_identity(args.ckpt, given(args, "backbone") or NONE["backbone"],
                           NONE["width"] if width is None else width, args.seed)
    cache = cache_path(args.cache, model=model, shards=shard_identity(reader.index), rows=rows.tolist(), pool="avg",
                       clips=args.clips, **args.settings)
    if cache.is_file():
        return np.load(cache)["features"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    feats = extract(backbone, reader, rows, "avg", args.clips, device=device, progress=not args.no_progress,
                    **args.settings)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, features=feats, rows=rows)
    tmp.replace(cache)              # a killed run leaves no half-written cache behind
    return feats


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args, cfg = parse(build_parser(), argv)
    if cfg is None:
        return 0
    set_threads()                      # intra-op threads from the cores (OMP_NUM_THREADS wins)
    if args.protocol == "authors":
        return run(args, cfg, "linear_probe", frozen=True)
    full_batch_args(args)
    return full_batch(args)


def full_batch(args) -> int:
    reader = FrameReader(args.shards)
    idx = reader.index
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    plans = {s: split_rows(idx, s) for s in splits}
    args.ckpt = resolve_path(args.ckpt)
    backbone, desc, trained = load_model(args.ckpt, given(args, "backbone"), given(args, "width"), seed=args.seed)
    args.settings = settle(PROG, {k: given(args, k) for k in ("clip_len", "crop", "short_side")}, trained)
    check_crop(idx, args.settings["crop"], args.settings["short_side"])
    # one feature pass over every video any split needs
    rows = np.unique(np.concatenate([np.concatenate(p) for p in plans.values()]))
    feats = cached_features(args, reader, backbone, rows)
    pos = {int(r): i for i, r in enumerate(rows)}
    n_classes = len(idx.classes)
    per_split = []
    for s, (train, test) in plans.items():
        ftr = torch.from_numpy(feats[[pos[int(r)] for r in train]])       # [V, clips, D]
        fte = torch.from_numpy(feats[[pos[int(r)] for r in test]])
        ytr = torch.from_numpy(idx.label[train].astype(np.int64))
        clf = train_linear(ftr.flatten(0, 1), ytr.repeat_interleave(ftr.shape[1]), n_classes, args.epochs,
                           args.lr, args.weight_decay, args.seed)
        with torch.no_grad():
            logits = clf(fte.flatten(0, 1)).view(fte.shape[0], fte.shape[1], -1)
        acc = video_accuracy(logits, torch.from_numpy(idx.label[test].astype(np.int64)))
        logit_figures(args.out, f"linear_probe_split{s}", logits, idx.label[test], list(idx.classes),
                      f"linear probe: {desc}, split {s}")
        per_split.append({"split": s, "train": len(train), "test": len(test), **acc})
    mean = {"split": "mean", "train": "", "test": "",
            **{k: float(np.mean([r[k] for r in per_split])) for k in ("top1", "top5")}}
    rows_out = per_split + ([mean] if len(per_split) > 1 else [])
    text = f"linear probe (full-batch): {desc}\n" + table(rows_out, ["split", "train", "test", "top1", "top5"])
    j, t = write_results(args.out, "linear_probe", {"model": desc, "shards": str(args.shards), "protocol": "full-batch",
                                                                 "settings": args.settings,
                                                                 "splits": rows_out}, text)
    print(text)
    print(f"results: {j} {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
