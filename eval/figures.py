"""Figures of evaluation results: per-class accuracy and the confusion matrix (linear probe,
fine-tune), and retrieval R@1 and probe top-1 against the checkpoint step (``cstp-report RUN --eval``).

The checkpoint curve runs, per checkpoint of the run and once for a random initialisation of the
same backbone, one feature pass (eval.features.extract) over the split's train and test videos, then
retrieval (eval.knn, as eval/retrieval.py) and a closed-form probe on the same features: ridge
regression of one-hot labels on standardised clip features, a video's prediction the mean of its
clips' scores. The closed-form probe is not the paper's protocol (eval/linear_probe.py is); it has no
learning rate or epochs to tune, so its curve moves only with the features.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from eval.classify import split_rows
from eval.features import check_crop, extract
from eval.knn import recall_at_k, topk_cosine
from shards.errors import InputError, plural
from shards.random_access import FrameReader
from train.checkpoint import list_checkpoints, load_backbone

RIDGE = 1.0          # the probe's ridge penalty on standardised features (fixed: a curve, not a tuned result)


def confusion(labels, preds, n_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    return np.bincount(labels * n_classes + preds, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Each class's share of its test videos predicted right (NaN for a class without test videos)."""
    n = cm.sum(axis=1)
    return np.where(n > 0, np.diag(cm) / np.maximum(n, 1), np.nan)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_figures(out_dir, name: str, cm: np.ndarray, classes: list[str], title: str) -> list[Path]:
    """``name``_per_class.png (accuracy of each class, with its count of test videos) and
    ``name``_confusion.png (rows: true class, normalised to its test videos) in ``out_dir``."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(cm)
    acc, n = per_class_accuracy(cm), cm.sum(axis=1)
    tested = np.flatnonzero(n > 0)                 # a class with no test videos has no bar to show
    left_out = f"; {plural(len(classes) - len(tested), 'class', 'classes')} without test videos left out" \
        if len(tested) < len(classes) else ""
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.22 * len(tested)))
    y = np.arange(len(tested))
    ax.barh(y, 100 * acc[tested], color="C0")
    for i, c in zip(y, tested):
        ax.text(1, i, f"{int(cm[c, c])}/{int(n[c])}", va="center", fontsize=7)
    ax.set_yticks(y, [classes[c] for c in tested], fontsize=7)
    ax.invert_yaxis()
    overall = np.trace(cm) / max(cm.sum(), 1)
    ax.axvline(100 * overall, color="C3", linestyle="--", linewidth=1, label=f"all videos: {100 * overall:.1f}%")
    ax.set(xlabel="top-1 of the class's test videos (%)", xlim=(0, 100))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{title}\nper-class accuracy{left_out}", fontsize=9)
    paths = [_save(plt, fig, out / f"{name}_per_class.png")]

    seen = np.flatnonzero((n > 0) | (cm.sum(axis=0) > 0))   # classes tested or predicted
    k = len(seen)
    sub = cm[np.ix_(seen, seen)] / np.maximum(n[seen], 1)[:, None]
    side = min(12, 2.5 + 0.18 * k)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1)
    if k <= 60:                      # more names than that are unreadable; the axes then count classes
        ax.set_xticks(range(k), [classes[c] for c in seen], rotation=90, fontsize=6)
        ax.set_yticks(range(k), [classes[c] for c in seen], fontsize=6)
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class's test videos")
    hidden = f"; {plural(len(classes) - k, 'class', 'classes')} neither tested nor predicted left out" \
        if k < len(classes) else ""
    ax.set_title(f"{title}\nconfusion matrix{hidden}", fontsize=9)
    paths.append(_save(plt, fig, out / f"{name}_confusion.png"))
    return paths


def logit_figures(out_dir, name: str, logits, labels, classes: list[str], title: str) -> list[Path]:
    """:func:`class_figures` of [V, clips, C] clip logits (a video's prediction: its clips' mean, as
    eval.classify.video_accuracy scores it) and the videos' labels."""
    preds = np.asarray(logits.float().mean(dim=1).argmax(dim=1).cpu())
    return class_figures(out_dir, name, confusion(np.asarray(labels), preds, len(classes)), classes, title)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                penalty: float = RIDGE) -> np.ndarray:
    """Predicted class of each test video from [V, clips, D] features: ridge regression of one-hot
    labels on every train clip (features standardised by the train clips), clip scores averaged."""
    xtr = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = np.hstack([(xtr - mu) / sd, np.ones((len(xtr), 1))])
    t = np.eye(n_classes)[np.repeat(y_train, x_train.shape[1])]
    reg = penalty * np.eye(a.shape[1])
    reg[-1, -1] = 0.0                                      # the bias is not penalised
    w = np.linalg.solve(a.T @ a + reg, a.T @ t)
    xte = (x_test.astype(np.float64) - mu) / sd
    scores = np.concatenate([xte, np.ones(xte.shape[:-1] + (1,))], axis=-1) @ w
    return scores.mean(axis=1).argmax(axis=1)


def evaluate_features(gal: np.ndarray, qry: np.ndarray, gal_lab: np.ndarray, q_lab: np.ndarray,
                      n_classes: int) -> dict:
    """Retrieval R@1 (test videos against train videos, cosine of clip-averaged features) and the
    closed-form probe's top-1, from [V, clips, D] features."""
    import torch

    _, top = topk_cosine(torch.from_numpy(qry.mean(1)), torch.from_numpy(gal.mean(1)), 1)
    r1 = recall_at_k(top.numpy(), q_lab, gal_lab, (1,))["R@1"]
    top1 = float((ridge_probe(gal, gal_lab, qry, n_classes) == q_lab).mean())
    return {"R@1": float(r1), "top1": top1}


def add_eval_args(p) -> None:
    """cstp-report's options for --eval (the checkpoint curve)."""
    g = p.add_argument_group("--eval: retrieval R@1 and probe top-1 against the checkpoint step")
    g.add_argument("--eval", action="store_true", help="evaluate every checkpoint of RUN (and a random init): eval.png")
    g.add_argument("--shards", help="shard set to evaluate on (default: the run's data.shards)")
    g.add_argument("--split", default="1", help="split: train videos are the gallery and the probe's training set")
    g.add_argument("--clips", type=int, default=10, help="evenly spaced clips per video")
    g.add_argument("--clip-len", type=int, help="frames per clip (default: the run's data.clip_len)")
    g.add_argument("--crop", type=int, default=112, help="centre crop side, in pixels of frames seen at 128 short side")


def checkpoint_curve(run: Path, out: Path, config: dict, args) -> list[Path]:
    """eval.json and eval.png in ``out``: R@1 and probe top-1 of every checkpoint of ``run`` and of a
    random initialisation of its backbone, on ``args.split`` of the shards."""
    import torch

    data, model = (config or {}).get("data") or {}, (config or {}).get("model") or {}
    shards = args.shards or data.get("shards")
    if not shards:
        raise InputError(f"--eval: {run}/config.yaml names no data.shards; give --shards")
    ckpts = list_checkpoints(run)
    if not ckpts:
        raise InputError(f"--eval: {run} holds no ckpt-*.pt checkpoints")
    reader = FrameReader(shards)
    idx = reader.index
    check_crop(idx, args.crop)
    gal_rows, q_rows = split_rows(idx, args.split, flag="--split")
    gal_lab, q_lab = idx.label[gal_rows], idx.label[q_rows]
    kw = dict(n_clips=args.clips, clip_len=args.clip_len or int(data.get("clip_len", 16)), crop=args.crop,
              device=torch.device("cuda" if torch.cuda.is_available() else "cpu"), progress=False)
    points = []
    for ck in ["none", *ckpts]:
        bb, desc = load_backbone(str(ck), model.get("backbone", "r21d_10"), float(model.get("width", 1.0)))
        step = None if ck == "none" else int(re.fullmatch(r"ckpt-(\d+)\.pt", ck.name)[1])
        feats = [extract(bb, reader, rows, **kw) for rows in (gal_rows, q_rows)]
        points.append({"step": step, "model": desc, **evaluate_features(*feats, gal_lab, q_lab, len(idx.classes))})
        print(f"eval: {desc}: R@1 {100 * points[-1]['R@1']:.1f}, probe top-1 {100 * points[-1]['top1']:.1f}",
              flush=True)
    out.mkdir(parents=True, exist_ok=True)
    setting = {"shards": str(shards), "split": args.split, "gallery": len(gal_rows), "queries": len(q_rows),
               **{k: v for k, v in kw.items() if k != "progress"}, "device": str(kw["device"]),
               "probe": f"closed-form ridge, penalty {RIDGE:g}"}
    (out / "eval.json").write_text(json.dumps({**setting, "points": points}, indent=2))
    return [out / "eval.json", eval_curve(points, setting, run.name, out / "eval.png")]


def eval_curve(points: list[dict], setting: dict, name: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [p["step"] for p in points if p["step"] is not None]
    for key, label, colour in (("R@1", "retrieval R@1", "C0"), ("top1", "probe top-1 (closed-form)", "C1")):
        ax.plot(steps, [100 * p[key] for p in points if p["step"] is not None], "o-", color=colour, label=label)
        base = [p[key] for p in points if p["step"] is None]
        if base:
            ax.axhline(100 * base[0], color=colour, linestyle=":", linewidth=1.2, label=f"{label}, random init")
    ax.set(xlabel="checkpoint step", ylabel="%", ylim=(0, 102))
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: split {setting['split']}, {setting['queries']} test videos against "
                 f"{setting['gallery']} train videos, {setting['n_clips']} clips of {setting['clip_len']} frames",
                 fontsize=9)
    return _save(plt, fig, path)
