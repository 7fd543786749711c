"""Videos in which STOR's overlap is visible (``demo/make_dataset.py --content textured``).

The plain demo videos are flat grey with a few shapes: two crops of one frame look alike wherever
they are taken, so the spatial overlap of a pair cannot be told from what the network sees, and
nothing but the shapes' positions changes over time. Here each video is a camera moving over a
procedurally generated scene whose layout differs across it:

- the scene: a smooth random colour field (a coarse grid of random colours, bicubically enlarged),
  a band-limited noise texture and a few dozen static blobs of random colour;
- the camera: a pan at a constant velocity and a zoom at a constant rate (in or out), drawn per video,
  so the scene drifts and changes scale from frame to frame;
- the class objects (the demo's shapes, moving in the class's direction at the class's speed) on top
  of it, lit by a coloured light whose red, green and blue each swell and fade at random moments (a
  smooth random course per channel, a knot every 3 frames, multiplying the whole frame), so every
  stretch of a video has a colour course of its own;
- a sky-to-ground gradient (bright and bluish at the top, dark and brownish at the bottom), so
  every crop has an up and a rotation can be told.

What two crops share is then what they show (colour regions, blobs), and what two clips share is
where the camera, the objects and the light were at the same moments.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MARGIN = 1.9          # scene size / frame size: room for the pan and the zoom


def _enlarge(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """[h0, w0, c] -> [h, w, c], bicubic."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour, square: bool = False) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r) if square else (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[y0:y1, x0:x1][inside] = colour


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """[h, w, 3] float32 in 0..255: sky-to-ground gradient + colour field + texture + blobs."""
    # A bright, bluish top over a dark, brownish bottom: every crop has an up, so a rotation can be
    # told. The colour field is damped (0.45) so that where a crop lies does not drown the light's
    # course over time: at full strength the temporal head stayed at chance (README "Does STOR learn?").
    up = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None, None]
    img = up * np.array([150.0, 170.0, 200.0], np.float32) + (1 - up) * np.array([60.0, 45.0, 30.0], np.float32)
    img = img + 0.45 * (_enlarge(rng.uniform(30, 225, (5, 6, 3)), h, w) - 128)
    for cells, amp in ((24, 22.0), (64, 14.0)):
        img += amp * _enlarge(rng.normal(0, 1, (cells, int(cells * w / h) + 1, 1)), h, w)
    for _ in range(40):
        _disc(img, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 14), rng.uniform(0, 255, 3))
    return np.clip(img, 0, 255)


def light(rng: np.random.Generator, n_frames: int, depth: float = 0.5, every: int = 3) -> np.ndarray:
    """[n_frames, 3] colour gains: per channel a smooth random course around 1, a knot every ``every``
    frames, so a few frames' shift changes what a clip sees (a brightness-only course, or one that
    keeps the luminance, left the temporal head near chance)."""
    knots = max(2, n_frames // every + 2)
    v = rng.uniform(1 - depth, 1 + depth, (knots, 3))
    x = np.linspace(0, n_frames - 1, knots)
    return np.stack([np.interp(np.arange(n_frames), x, v[:, c]) for c in range(3)], 1).astype(np.float32)


def camera(rng: np.random.Generator, n_frames: int, h: int, w: int, sh: int, sw: int) -> np.ndarray:
    """[n_frames, 4]: each frame's window on the scene, (x, y, width, height) in scene pixels."""
    z0, z1 = sorted(rng.uniform(1.0, MARGIN * 0.95, 2))
    if rng.integers(2):
        z0, z1 = z1, z0
    zoom = z0 * (z1 / z0) ** (np.arange(n_frames) / max(1, n_frames - 1))   # scene px per frame px
    cx0, cy0 = rng.uniform(0.35, 0.65) * sw, rng.uniform(0.35, 0.65) * sh
    ang, speed = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 2.5)
    out = np.empty((n_frames, 4))
    for t, z in enumerate(zoom):
        ww, wh = z * w, z * h
        cx = np.clip(cx0 + speed * t * np.cos(ang), ww / 2, sw - ww / 2)
        cy = np.clip(cy0 + speed * t * np.sin(ang), wh / 2, sh - wh / 2)
        out[t] = cx - ww / 2, cy - wh / 2, ww, wh
    return out


def _film(bg: np.ndarray, windows: np.ndarray, h: int, w: int) -> np.ndarray:
    """[n, h, w, 3]: the scene seen through each window, bilinear."""
    sh, sw = bg.shape[:2]
    x, y, ww, wh = (torch.from_numpy(windows[:, i]).float() for i in range(4))
    # affine_grid maps output [-1, 1] to input [-1, 1]: scale = window / scene, shift = window centre
    theta = torch.zeros(len(windows), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = ww / sw, wh / sh
    theta[:, 0, 2], theta[:, 1, 2] = (2 * x + ww) / sw - 1, (2 * y + wh) / sh - 1
    grid = F.affine_grid(theta, (len(windows), 3, h, w), align_corners=False)
    src = torch.from_numpy(bg).permute(2, 0, 1)[None].expand(len(windows), -1, -1, -1)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False).permute(0, 2, 3, 1).numpy()


def render_textured(shape: str, direction: tuple[float, float], speed: float, rng: np.random.Generator,
                    n_frames: int, h: int = 128, w: int = 171) -> np.ndarray:
    """[n_frames, h, w, 3] uint8: the class's shapes moving over a panned and zoomed scene."""
    sh, sw = int(h * MARGIN), int(w * MARGIN)
    bg = scene(rng, sh, sw)
    films = _film(bg, camera(rng, n_frames, h, w, sh, sw), h, w)
    gain = light(rng, n_frames)
    objs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 12), rng.uniform(0, 255, 3)) for _ in range(4)]
    dx, dy = direction
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    for t in range(n_frames):
        img = films[t]
        for x0, y0, r, colour in objs:
            _disc(img, (x0 + dx * speed * t) % w, (y0 + dy * speed * t) % h, r if shape == "Circle" else 0.85 * r,
                  colour, square=shape != "Circle")
        frames[t] = np.clip(img * gain[t], 0, 255).astype(np.uint8)
    return frames
