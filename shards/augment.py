"""The paper's base augmentation as batched tensor operations on whatever device the batch is on.

Colour jitter (brightness, contrast, saturation, hue), random grayscale, gaussian blur, horizontal
flip and a small rotation jitter, with one parameter draw per clip shared by all its frames (a clip
must stay temporally coherent), applied to B x C x T x H x W batches, not per frame in PIL.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

# Kinetics statistics, as torchvision's video models use
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    p_jitter: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p_gray: float = 0.2
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    p_flip: float = 0.5
    p_rotate: float = 0.3
    max_degrees: float = 10.0
    normalize: bool = True


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


def augment(clips: torch.Tensor, cfg: AugmentConfig = AugmentConfig(),
            generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B, C, T, H, W] -> float [B, C, T, H, W], normalised when ``cfg.normalize``."""
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"expected B x 3 x T x H x W clips, got {tuple(clips.shape)}")
    x = clips.float().div_(255)
    b, dev, g = x.shape[0], x.device, generator
    jit = _mask(b, cfg.p_jitter, dev, g)
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
    gray = _mask(b, cfg.p_gray, dev, g)
    x = torch.where(gray, _gray(x).expand_as(x), x)
    if cfg.p_blur > 0:
        blur = _mask(b, cfg.p_blur, dev, g)
        sigma = _per_clip(b, dev, g, *cfg.blur_sigma)
        x = torch.where(blur, _blur(x, sigma), x)
    flip = _mask(b, cfg.p_flip, dev, g)
    x = torch.where(flip, x.flip(-1), x)
    if cfg.p_rotate > 0 and cfg.max_degrees > 0:
        rot = _mask(b, cfg.p_rotate, dev, g)
        deg = _per_clip(b, dev, g, -cfg.max_degrees, cfg.max_degrees)
        x = torch.where(rot, _rotate(x, deg), x)
    if cfg.normalize:
        mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1, 1)
        std = torch.tensor(STD, device=dev).view(1, 3, 1, 1, 1)
        x = (x - mean) / std
    return x


def augment_pair(batch: dict, cfg: AugmentConfig = AugmentConfig(),
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two training views of a loader batch already on the device: (x1, x2), each float
    [B, C, T, H, W]. ``batch`` holds ``clip1``, ``clip2`` (uint8) and the labels ``rot1``, ``rot2``."""
    return augment(batch["clip1"], cfg, generator), augment(batch["clip2"], cfg, generator)
