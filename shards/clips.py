"""Frames to clip tensors: JPEG decode, crop, resize, rotate. Shared by the streaming loader and the
random-access reader, so training and evaluation see pixels made the same way."""
from __future__ import annotations

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F


def decode_jpegs(jpegs: list[bytes]) -> np.ndarray:
    """[n, H, W, 3] uint8 RGB. simplejpeg (libjpeg-turbo) is the fastest decoder installed here."""
    return np.stack([simplejpeg.decode_jpeg(j, colorspace="RGB") for j in jpegs])


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` (x, y, w, h) out of [T, H, W, 3] frames, then resize to ``size`` (h, w).

    Returns [3, T, h, w] uint8. Cropping first means only the crop's pixels are resampled. The
    uint8 channels-last resize (what a [T,H,W,3] array viewed as [T,3,H,W] already is) is the fast
    path of torch's CPU kernel, four times quicker than float.
    """
    x, y, w, h = box
    crop = torch.from_numpy(np.ascontiguousarray(frames[:, y:y + h, x:x + w])).permute(0, 3, 1, 2)
    if (h, w) != tuple(size):
        crop = F.interpolate(crop, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return crop.permute(1, 0, 2, 3).contiguous()


def rotate(clip: torch.Tensor, degrees: int) -> torch.Tensor:
    """Rotate every frame of a [C, T, H, W] clip counter-clockwise by a multiple of 90 degrees."""
    k = (degrees // 90) % 4
    return clip if k == 0 else torch.rot90(clip, k, dims=(2, 3))


def center_box(height: int, width: int, crop: int) -> tuple[int, int, int, int]:
    if crop > min(height, width):
        raise ValueError(f"centre crop {crop} is larger than the {height}x{width} frames")
    return (width - crop) // 2, (height - crop) // 2, crop, crop
