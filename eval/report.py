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


def retrieval_figure(path: str | Path, reader, queries: list[int], top: np.ndarray, gallery_rows: np.ndarray,
                     classes: list[str]) -> Path:
    """Each query's middle frame beside its top-k gallery videos (paper Fig. 5): one row per query,
    a caption with rank and class name under every frame, a border that is green when the gallery
    video has the query's class and red when not, and a colour key above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    idx = reader.index
    h, w = int(idx.attrs["height"]), int(idx.attrs["width"])
    cols = 1 + top.shape[1]
    cell_w = 1.6                                   # inches; at 150 dpi a 240-pixel-wide cell
    fig, axes = plt.subplots(len(queries), cols, squeeze=False, layout="constrained",
                             figsize=(cols * cell_w, len(queries) * (cell_w * h / w + 0.45) + 0.35))
    name = lambda row: classes[int(idx.label[row])] if int(idx.label[row]) >= 0 else "?"  # noqa: E731
    for r, (q, tops) in enumerate(zip(queries, top)):
        items = [(q, "query", QUERY)] + [
            (int(gallery_rows[t]), f"top {k + 1}", HIT if idx.label[gallery_rows[t]] == idx.label[q] else MISS)
            for k, t in enumerate(tops)]
        for c, (row, tag, colour) in enumerate(items):
            ax = axes[r, c]
            ax.imshow(reader.read_frames(row, [int(idx.n_frames[row]) // 2])[0], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor(colour)
                s.set_linewidth(4 if c else 2)
            ax.set_xlabel(f"{tag}\n" + textwrap.shorten(name(row), 22, placeholder="…"), fontsize=8, labelpad=2)
    fig.legend(handles=[Patch(facecolor="white", edgecolor=QUERY, linewidth=2, label="query"),
                        Patch(facecolor="white", edgecolor=HIT, linewidth=3, label="hit: the query's class"),
                        Patch(facecolor="white", edgecolor=MISS, linewidth=3, label="miss: another class")],
               loc="outside upper center", ncol=3, fontsize=8, frameon=False)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return Path(path)
