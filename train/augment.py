"""CSTP's augmentation as batched tensor operations on whatever device the batch is on.

Per clip, in this order (README, "Stage 2: shards" > Batch): horizontal flip; rotation by the clip's labelled angle (rot1,
rot2: the loader only labels it), so the label describes the pixels the network sees; then, with
probability ``p_base``, the authors' base transform (colour jitter, grayscale, blur, a small
rotation); normalisation. The authors (data_process/preprocess_data.py: TwoClipTransform with
p=0.3) give each clip the base transform with p=0.3 and otherwise only the flip. Every draw is one
per clip, shared by all its frames (a clip must stay temporally coherent).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

# Kinetics statistics, as torchvision's video models use (eval/features.py normalises the same way)
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
ROTATIONS = (0, 90, 180, 270)


@dataclasses.dataclass
class AugmentConfig:
    p_base: float = 0.3        # probability that a clip gets the base transform below (else only the flip)
    p_jitter: float = 0.8      # base: probability of colour jitter
    brightness: float = 0.4    # base: brightness factor drawn in 1 +- this
    contrast: float = 0.4      # base: contrast factor drawn in 1 +- this
    saturation: float = 0.4    # base: saturation factor drawn in 1 +- this
    hue: float = 0.1           # base: hue shift drawn in +- this (turns)
    p_gray: float = 0.2        # base: probability of grayscale
    p_blur: float = 0.5        # base: probability of gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)   # base: blur sigma range (pixels)
    p_rotate: float = 1.0      # base: probability of the small rotation (the authors always apply it)
    max_degrees: float = 10.0  # base: small rotation angle drawn in +- this (degrees)
    p_flip: float = 0.5        # every clip: probability of a horizontal flip (before the labelled rotation)
    normalize: bool = True     # subtract mean, divide by std
    mean: tuple[float, float, float] = MEAN    # per-channel mean (RGB, pixels in [0, 1])
    std: tuple[float, float, float] = STD      # per-channel standard deviation


def _per_clip(b: int, device, gen, lo: float, hi: float) -> torch.Tensor:
    return torch.empty(b, device=device).uniform_(lo, hi, generator=gen).view(b, 1, 1, 1, 1)


def _mask(b: int, p: float, device, gen) -> torch.Tensor:
    return (torch.rand(b, device=device, generator=gen) < p).view(b, 1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by ``shift`` turns (a linear stand-in for HSV hue shifts)."""
    theta = shift * 2 * math.pi
    c, s = torch.cos(theta), torch.sin(theta)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    i = 0.596 * r - 0.274 * g - 0.322 * b
    q = 0.211 * r - 0.523 * g + 0.312 * b
    i, q = i * c - q * s, i * s + q * c
    return torch.cat([y + 0.956 * i + 0.621 * q, y - 0.272 * i - 0.647 * q, y - 1.106 * i + 1.703 * q], dim=1)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable gaussian blur with one sigma per clip."""
    b, c, t, h, w = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kern = torch.exp(-(k.view(1, -1) ** 2) / (2 * sigma.view(b, 1) ** 2))
    kern = kern / kern.sum(dim=1, keepdim=True)                       # [B, K]
    weight = kern.repeat_interleave(c * t, dim=0)                      # [B*C*T, K]
    planes = x.reshape(1, b * c * t, h, w)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, weight.view(-1, 1, 1, 2 * radius + 1), groups=b * c * t)
    planes = F.conv2d(planes, weight.view(-1, 1, 2 * radius + 1, 1), groups=b * c * t)
    return planes.view(b, c, t, h, w)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    a = degrees.view(b) * math.pi / 180
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(a)], 1),
                         torch.stack([sin, cos, torch.zeros_like(a)], 1)], 1)    # [B, 2, 3]
    grid = F.affine_grid(theta, (b, c * t, h, w), align_corners=False)
    out = F.grid_sample(x.reshape(b, c * t, h, w), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    return out.view(b, c, t, h, w)


def _base(x: torch.Tensor, cfg: AugmentConfig, g, chosen: torch.Tensor) -> torch.Tensor:
    """The base transform on the clips where ``chosen`` (a [B, 1, 1, 1, 1] mask) is set."""
    b, dev = x.shape[0], x.device
    jit = chosen & _mask(b, cfg.p_jitter, dev, g)
    if cfg.brightness:
        f = _per_clip(b, dev, g, 1 - cfg.brightness, 1 + cfg.brightness)
        x = torch.where(jit, x * f, x)
    if cfg.contrast:
        f = _per_clip(b, dev, g, 1 - cfg.contrast, 1 + cfg.contrast)
        m = _gray(x).mean(dim=(2, 3, 4), keepdim=True)
        x = torch.where(jit, (x - m) * f + m, x)
    if cfg.saturation:
        f = _per_clip(b, dev, g, 1 - cfg.saturation, 1 + cfg.saturation)
        gray = _gray(x)
        x = torch.where(jit, (x - gray) * f + gray, x)
    if cfg.hue:
        x = torch.where(jit, _hue(x, _per_clip(b, dev, g, -cfg.hue, cfg.hue)), x)
    x = x.clamp_(0, 1)
    gray = chosen & _mask(b, cfg.p_gray, dev, g)
    x = torch.where(gray, _gray(x).expand_as(x), x)
    if cfg.p_blur > 0:
        blur = chosen & _mask(b, cfg.p_blur, dev, g)
        sigma = _per_clip(b, dev, g, *cfg.blur_sigma)
        x = torch.where(blur, _blur(x, sigma), x)
    if cfg.p_rotate > 0 and cfg.max_degrees > 0:
        rot = chosen & _mask(b, cfg.p_rotate, dev, g)
        deg = _per_clip(b, dev, g, -cfg.max_degrees, cfg.max_degrees)
        x = torch.where(rot, _rotate(x, deg), x)
    return x


def _normalize(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1, 1)
    return (x - mean) / std


def _to_float(clips: torch.Tensor) -> torch.Tensor:
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"expected B x 3 x T x H x W clips, got {tuple(clips.shape)}")
    return clips.float().div_(255)


def _flip(x: torch.Tensor, cfg: AugmentConfig, g) -> torch.Tensor:
    return torch.where(_mask(x.shape[0], cfg.p_flip, x.device, g), x.flip(-1), x)


def rotate_by_label(x: torch.Tensor, labels: torch.Tensor, rotations=ROTATIONS) -> torch.Tensor:
    """Each clip rotated counter-clockwise by ``rotations[label]`` degrees, one torch.rot90 per class."""
    quarter = torch.tensor([(r // 90) % 4 for r in rotations], device=labels.device)[labels]
    if x.shape[-1] != x.shape[-2] and bool((quarter % 2 == 1).any()):
        raise ValueError(f"rotating {x.shape[-2]}x{x.shape[-1]} clips by 90 degrees needs square clips (data.out_size)")
    out = x.clone()
    for k in range(1, 4):
        sel = (quarter == k).nonzero().flatten()
        if len(sel):
            out[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
    return out


def augment(clips: torch.Tensor, cfg: AugmentConfig | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B, C, T, H, W] -> float: the flip and the base transform on every clip (``p_base`` is
    not applied: this is the supervised fine-tuning augmentation), normalised when ``cfg.normalize``."""
    cfg = cfg or AugmentConfig()
    x = _flip(_to_float(clips), cfg, generator)
    x = _base(x, cfg, generator, torch.ones(x.shape[0], 1, 1, 1, 1, dtype=torch.bool, device=x.device))
    return _normalize(x, cfg) if cfg.normalize else x


def augment_clips(clips: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig | None = None,
                  generator: torch.Generator | None = None, rotations=ROTATIONS) -> torch.Tensor:
    """One training view: flip, rotation by the labelled angle, the base transform with ``p_base``."""
    cfg = cfg or AugmentConfig()
    x = rotate_by_label(_flip(_to_float(clips), cfg, generator), labels, rotations)
    x = _base(x, cfg, generator, _mask(x.shape[0], cfg.p_base, x.device, generator))
    return _normalize(x, cfg) if cfg.normalize else x


def augment_pair(batch: dict, cfg: AugmentConfig | None = None, generator: torch.Generator | None = None,
                 rotations=ROTATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """The two training views of a loader batch already on the device: (x1, x2), each float
    [B, C, T, H, W]. ``batch`` holds ``clip1``, ``clip2`` (uint8, unrotated) and their rotation
    labels ``rot1``, ``rot2`` (indices into ``rotations``, data.rotations)."""
    return (augment_clips(batch["clip1"], batch["rot1"], cfg, generator, rotations),
            augment_clips(batch["clip2"], batch["rot2"], cfg, generator, rotations))
