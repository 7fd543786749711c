"""Nearest-neighbour video retrieval (the paper's Table 7; VCOP/IIC protocol).

    python eval/retrieval.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --split 1
    python eval/retrieval.py --ckpt none --backbone r21d_10 --shards /shards/ucf101      # random init

Gallery: the split's train videos; queries: its test videos. 10 clips of 16 frames per video at
evenly spaced centres, centre crop 112, features of the backbone's last conv block (pooled), averaged
over the clips, cosine similarity; R@k counts a query as hit when any of its top k gallery videos
has its class. Every video counts. A gallery smaller than k makes R@k count the whole gallery: the
table and the JSON say so. Writes retrieval.json, retrieval.txt and retrieval.png.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):        # run by path: import this checkout's packages, not eval/'s modules
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import eval  # noqa: E402,F401  before torch: OpenMP's threads wait asleep (train/threads.py, passive_wait)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from eval.ckpt_source import load_model, resolve_path, settle  # noqa: E402
from eval.classify import split_rows  # noqa: E402
from eval.features import add_model_args, check_crop, extract, given  # noqa: E402
from eval.knn import recall_at_k, topk_cosine  # noqa: E402
from eval.report import retrieval_figure, table, write_results  # noqa: E402
from shards.errors import InputError, command, parser, plural  # noqa: E402
from shards.random_access import FrameReader  # noqa: E402
from train.threads import set_threads  # noqa: E402

PROG = "retrieval.py"
KS = (1, 5, 10, 20, 50)


def build_parser():
    p = parser(PROG, __doc__.split("\n\n")[0])
    add_model_args(p, shards_required=False)
    p.add_argument("--split", default="1", help="which train/test split: gallery = its train videos, queries = its test videos")
    p.add_argument("--pool", choices=["avg", "vcop"], default="avg", help="how the last conv block becomes a feature")
    p.add_argument("--batch-videos", type=int, default=4, help="videos per backbone pass")
    p.add_argument("--features-out", help="save gallery and query features (.npz)")
    p.add_argument("--features-in", help="reuse features saved by --features-out (no backbone pass)")
    p.add_argument("--figure-queries", type=int, default=4, help="queries shown in retrieval.png (0: no figure)")
    p.add_argument("--figure-top", type=int, default=3, help="gallery videos shown per query in retrieval.png")
    return p


def load_features(path: str) -> dict:
    try:
        data = np.load(path, allow_pickle=False)
        return {k: data[k] for k in ("gallery", "queries", "gallery_rows", "query_rows", "gallery_labels",
                                     "query_labels", "description")}
    except FileNotFoundError:
        raise InputError(f"--features-in {path}: no such file; write one with --features-out") from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"--features-in {path}: not a features file of --features-out ({exc})") from None


def compute_features(args) -> tuple[dict, FrameReader]:
    reader = FrameReader(args.shards)
    idx = reader.index
    gal_rows, q_rows = split_rows(idx, args.split, flag="--split")
    args.ckpt = resolve_path(args.ckpt)
    backbone, desc, trained = load_model(args.ckpt, given(args, "backbone"), given(args, "width"), seed=args.seed)
    args.settings = settle(PROG, {k: given(args, k) for k in ("clip_len", "crop", "short_side")}, trained)
    check_crop(idx, args.settings["crop"], args.settings["short_side"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kw = dict(pool=args.pool, n_clips=args.clips, batch_videos=args.batch_videos, device=device,
              progress=not args.no_progress, **args.settings)
    data = {"gallery": extract(backbone, reader, gal_rows, **kw).mean(axis=1),
            "queries": extract(backbone, reader, q_rows, **kw).mean(axis=1),
            "gallery_rows": gal_rows, "query_rows": q_rows, "gallery_labels": idx.label[gal_rows],
            "query_labels": idx.label[q_rows], "description": desc}
    if args.features_out:
        np.savez(args.features_out, **data)
    return data, reader


def capped(ks, gallery: int) -> dict:
    """{"R@k": gallery size} for each k beyond the gallery: there R@k is R@<gallery size>."""
    return {f"R@{k}": gallery for k in ks if k > gallery}


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads()                      # intra-op threads from the cores (OMP_NUM_THREADS wins)
    if args.features_in:
        data = load_features(args.features_in)
        reader = FrameReader(args.shards) if args.shards else None
    elif not args.shards:
        raise InputError("--shards is required (or --features-in FILE from an earlier --features-out)")
    else:
        data, reader = compute_features(args)
    gal, qry = torch.from_numpy(data["gallery"]), torch.from_numpy(data["queries"])
    q_lab, gal_lab = np.asarray(data["query_labels"]), np.asarray(data["gallery_labels"])
    desc = str(data["description"])
    _, top = topk_cosine(qry, gal, min(max(KS), len(gal)))
    top = top.numpy()
    rec = recall_at_k(top, q_lab, gal_lab, KS)
    cap = capped(KS, len(gal))
    results = {"model": desc, "shards": args.shards, "split": args.split, "pool": args.pool, "gallery": len(gal),
               "queries": len(qry), **rec, "capped": cap, "settings": getattr(args, "settings", None)}
    header = {k: (f"{k}*" if k in cap else k) for k in rec}
    note = (f"\n* the gallery holds only {plural(len(gal), 'video')}: {', '.join(cap)} count all of them (= R@{len(gal)})"
            if cap else "")
    text = (f"retrieval: {desc}\n{plural(len(qry), 'query', 'queries')} (split {args.split} test) against "
            f"{plural(len(gal), 'gallery video')} (train)\n"
            + table([{header[k]: v for k, v in rec.items()}], list(header.values())) + note)
    out = Path(args.out)
    j, t = write_results(out, "retrieval", results, text)
    print(text)
    if reader is not None and args.figure_queries > 0:
        q_rows = np.asarray(data["query_rows"])
        picks = np.linspace(0, len(q_rows) - 1, min(args.figure_queries, len(q_rows))).astype(int)
        fig = retrieval_figure(out / "retrieval.png", reader, [int(q_rows[i]) for i in picks],
                               top[picks, :args.figure_top], np.asarray(data["gallery_rows"]), reader.index.classes,
                               title=f"retrieval: {desc}; split {args.split}")
        print(f"figure: {fig}")
    print(f"results: {j} {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
