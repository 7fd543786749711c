"""Nearest-neighbour video retrieval (the paper's Table 7; VCOP/IIC protocol).

    python eval/retrieval.py --ckpt runs/cstp/ckpt-00010000.pt --shards /shards/ucf101 --split 1
    python eval/retrieval.py --ckpt none --backbone r21d_10 --shards /shards/ucf101      # random init

Gallery: the split's train videos; queries: its test videos. 10 clips of 16 frames per video at
evenly spaced centres, centre crop 112, features of the backbone's last conv block (pooled), averaged
over the clips, cosine similarity; R@k counts a query as hit when any of its top k gallery videos
has its class. Every video counts. Writes retrieval.json, retrieval.txt and retrieval.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

KS = (1, 5, 10, 20, 50)


def build_parser() -> argparse.ArgumentParser:
    from eval.features import add_model_args

    p = argparse.ArgumentParser(prog="retrieval.py", description=__doc__.split("\n\n")[0])
    add_model_args(p, shards_required=False)
    p.add_argument("--split", default="1")
    p.add_argument("--pool", choices=["avg", "vcop"], default="avg")
    p.add_argument("--batch-videos", type=int, default=4)
    p.add_argument("--features-out", help="save gallery and query features (.npz)")
    p.add_argument("--features-in", help="reuse features saved by --features-out (no backbone pass)")
    p.add_argument("--figure-queries", type=int, default=4)
    return p


def main(argv: list[str] | None = None) -> int:
    from eval.features import extract, load_backbone
    from eval.knn import recall_at_k, topk_cosine
    from eval.report import retrieval_figure, table, write_results
    from shards.format import SPLIT_TEST, SPLIT_TRAIN
    from shards.index import IndexError_
    from shards.random_access import FrameReader
    from train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        if args.features_in:
            data = np.load(args.features_in, allow_pickle=False)
            gal, qry = torch.from_numpy(data["gallery"]), torch.from_numpy(data["queries"])
            gal_rows, q_rows = data["gallery_rows"], data["query_rows"]
            gal_lab, q_lab = data["gallery_labels"], data["query_labels"]
            desc = str(data["description"])
            reader = FrameReader(args.shards) if args.shards else None
        else:
            if not args.shards:
                raise ValueError("--shards is required (unless --features-in)")
            reader = FrameReader(args.shards)
            idx = reader.index
            gal_rows, q_rows = idx.select(args.split, SPLIT_TRAIN), idx.select(args.split, SPLIT_TEST)
            if len(q_rows) == 0:
                raise ValueError(f"split {args.split} has no test videos in {args.shards}")
            if len(gal_rows) == 0:
                raise ValueError(f"split {args.split} has no train videos in {args.shards}")
            backbone, desc = load_backbone(args.ckpt, args.backbone, args.width, seed=args.seed)
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            kw = dict(pool=args.pool, n_clips=args.clips, clip_len=args.clip_len, crop=args.crop,
                      batch_videos=args.batch_videos, device=device, progress=not args.no_progress)
            gal = torch.from_numpy(extract(backbone, reader, gal_rows, **kw).mean(axis=1))
            qry = torch.from_numpy(extract(backbone, reader, q_rows, **kw).mean(axis=1))
            gal_lab, q_lab = idx.label[gal_rows], idx.label[q_rows]
            if args.features_out:
                np.savez(args.features_out, gallery=gal.numpy(), queries=qry.numpy(), gallery_rows=gal_rows,
                         query_rows=q_rows, gallery_labels=gal_lab, query_labels=q_lab, description=desc)
    except (CheckpointError, IndexError_, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"retrieval: {exc}", file=sys.stderr)
        return 2

    k = min(max(KS), len(gal))
    _, top = topk_cosine(qry, gal, k)
    top = top.numpy()
    rec = recall_at_k(top, np.asarray(q_lab), np.asarray(gal_lab), KS)
    results = {"model": desc, "shards": args.shards, "split": args.split, "pool": args.pool, "gallery": len(gal),
               "queries": len(qry), **rec}
    text = (f"retrieval: {desc}\n{len(qry)} queries (split {args.split} test) against {len(gal)} gallery videos (train)\n"
            + table([rec], list(rec)))
    out = Path(args.out)
    j, t = write_results(out, "retrieval", results, text)
    print(text)
    if reader is not None and args.figure_queries > 0:
        n = min(args.figure_queries, len(q_rows))
        picks = np.linspace(0, len(q_rows) - 1, n).astype(int)
        fig = retrieval_figure(out / "retrieval.png", reader, [int(q_rows[i]) for i in picks], top[picks],
                               np.asarray(gal_rows), reader.index.classes)
        print(f"figure: {fig}")
    print(f"results: {j} {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
