"""Writing evaluation results: a readable table beside a JSON file, and the retrieval figure."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

HIT, MISS, QUERY = "#1a9641", "#d7191c", "#2c7bb6"     # colour-blind-safe green / red / blue


def table(rows: list[dict], columns: list[str]) -> str:
    """Rows as aligned text; float figures are shown in percent."""
    cells = [[str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{100 * r[c]:.1f}" for c in columns] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(columns)]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(x) for x in cells), "(figures in %)"])


def write_results(out_dir: str | Path, name: str, results: dict, text: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, t = out / f"{name}.json", out / f"{name}.txt"
    j.write_text(json.dumps(results, indent=2))
    t.write_text(text + "\n")
    return j, t


def frame_strip(reader, row: int, n: int = 3, gap: int = 2) -> np.ndarray:
    """``n`` frames of video ``row`` at evenly spaced times (1/6, 1/2, 5/6 of it for 3), side by side
    with a white gap: the demo's classes differ by motion, which one frame cannot show."""
    n_frames = int(reader.index.n_frames[row])
    at = sorted({min(n_frames - 1, int(n_frames * (2 * i + 1) / (2 * n))) for i in range(n)})
    frames = reader.read_frames(row, at)
    h = frames[0].shape[0]
    white = np.full((h, gap, 3), 255, dtype=frames[0].dtype)
    return np.concatenate([x for f in frames for x in (f, white)][:-1], axis=1)


def retrieval_figure(path: str | Path, reader, queries: list[int], top: np.ndarray, gallery_rows: np.ndarray,
                     classes: list[str], title: str = "", frames: int = 3) -> Path:
    """Each query beside its top-k gallery videos (paper Fig. 5), each video as ``frames`` frames over
    time (left to right): one row per query, a caption with rank and class name under every video, a
    border that is green when the gallery video has the query's class and red when not, a colour key
    and ``title`` (the model and checkpoint) above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    idx = reader.index
    h, w = int(idx.attrs["height"]), int(idx.attrs["width"]) * frames
    cols = 1 + top.shape[1]
    cell_w = 1.0 + 0.9 * frames                    # inches: about 1.2 inch a frame
    fig, axes = plt.subplots(len(queries), cols, squeeze=False, layout="constrained",
                             figsize=(cols * cell_w, len(queries) * (cell_w * h / w + 0.45) + 0.6))
    name = lambda row: classes[int(idx.label[row])] if int(idx.label[row]) >= 0 else "?"  # noqa: E731
    for r, (q, tops) in enumerate(zip(queries, top)):
        items = [(q, "query", QUERY)] + [
            (int(gallery_rows[t]), f"top {k + 1}", HIT if idx.label[gallery_rows[t]] == idx.label[q] else MISS)
            for k, t in enumerate(tops)]
        for c, (row, tag, colour) in enumerate(items):
            ax = axes[r, c]
            ax.imshow(frame_strip(reader, row, frames), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor(colour)
                s.set_linewidth(4 if c else 2)
            ax.set_xlabel(f"{tag}: " + textwrap.shorten(name(row), 30, placeholder="…"), fontsize=8, labelpad=2)
    fig.legend(handles=[Patch(facecolor="white", edgecolor=QUERY, linewidth=2, label="query"),
                        Patch(facecolor="white", edgecolor=HIT, linewidth=3, label="hit: the query's class"),
                        Patch(facecolor="white", edgecolor=MISS, linewidth=3, label="miss: another class")],
               loc="outside upper center", ncol=3, fontsize=8, frameon=False,
               title=f"{title}\n{frames} frames of each video, left to right in time" if title else
               f"{frames} frames of each video, left to right in time", title_fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
