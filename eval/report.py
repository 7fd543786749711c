"""Writing evaluation results: a readable table beside a JSON file, and the retrieval figure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
    """Each query's middle frame beside its top 3 gallery videos, class names below (paper Fig. 5)."""
    from PIL import Image, ImageDraw

    idx = reader.index
    h, w = int(idx.attrs["height"]), int(idx.attrs["width"])
    pad, text_h = 6, 28          # two caption lines: the tag, then the class name
    cols = 1 + min(3, top.shape[1])
    img = Image.new("RGB", (cols * (w + pad) + pad, len(queries) * (h + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(img)
    for r, (q, tops) in enumerate(zip(queries, top)):
        y = pad + r * (h + text_h + pad)
        q_label = int(idx.label[q])
        items = [(q, "query")] + [(int(gallery_rows[t]), f"top {k + 1}") for k, t in enumerate(tops[:cols - 1])]
        for c, (row, tag) in enumerate(items):
            x = pad + c * (w + pad)
            frame = reader.read_frames(row, [int(idx.n_frames[row]) // 2])[0]
            img.paste(Image.fromarray(frame), (x, y))
            if c > 0:
                colour = (0, 160, 0) if int(idx.label[row]) == q_label else (200, 0, 0)
                draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=3)
            name = classes[int(idx.label[row])] if int(idx.label[row]) >= 0 else "?"
            while len(name) > 1 and draw.textlength(name) > w:     # small frames: cut, never overlap
                name = name[:-1]
            draw.text((x, y + h + 2), tag, fill="black")
            draw.text((x, y + h + 14), name, fill="black")
    img.save(path)
    return Path(path)
