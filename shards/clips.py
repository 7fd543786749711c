"""Frames to clip tensors: JPEG decode, crop, resize, rotate. Shared by the streaming loader and the
random-access reader, so training and evaluation see pixels made the same way."""
from __future__ import annotations

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F


class CorruptFrame(ValueError):
    """A JPEG that does not decode; ``position`` is its place in the list given to decode_jpegs."""

    def __init__(self, position: int, reason: str):
        super().__init__(f"frame {position}: {reason}")
        self.position, self.reason = position, reason


def decode_jpegs(jpegs: list[bytes]) -> np.ndarray:
    """[n, H, W, 3] uint8 RGB. simplejpeg (libjpeg-turbo) is the fastest decoder installed here;
    frames are decoded straight into one array (all frames of a shard set share H x W). Strict
    decoding: a corrupt or truncated JPEG raises CorruptFrame rather than giving grey pixels."""
    out = None
    for i, j in enumerate(jpegs):
        try:
            if out is None:
                h, w, _, _ = simplejpeg.decode_jpeg_header(j)
                out = np.empty((len(jpegs), h, w, 3), np.uint8)
            simplejpeg.decode_jpeg(j, colorspace="RGB", buffer=out[i], strict=True)
        except ValueError as exc:
            raise CorruptFrame(i, f"JPEG does not decode ({exc})") from None
    return out


def clip_from_frames(frames: np.ndarray, which, box: tuple[int, int, int, int], degrees: int,
                     size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """One clip as [3, T, h, w] uint8: frames ``which`` of [n, H, W, 3] ``frames``, cropped to ``box``
    (x, y, w, h), resized to ``size``, rotated counter-clockwise by ``degrees`` (a multiple of 90).

    Gathering and cropping are one numpy copy of the crop alone, the resize runs on uint8
    channels-last (torch's fast path), and the one layout change writes into ``out`` (a slot of the
    batch tensor) directly.
    """
    x, y, w, h = box
    crop = frames[np.asarray(which), y:y + h, x:x + w]       # fancy index: already a fresh array
    t = torch.from_numpy(crop).permute(0, 3, 1, 2)
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    k = (degrees // 90) % 4
    if k:
        t = torch.rot90(t, k, dims=(2, 3))
    t = t.permute(1, 0, 2, 3)
    if out is None:
        return t.contiguous()
    out.copy_(t)
    return out


def center_box(height: int, width: int, crop: int) -> tuple[int, int, int, int]:
    if crop > min(height, width):
        raise ValueError(f"centre crop {crop} is larger than the {height}x{width} frames")
    return (width - crop) // 2, (height - crop) // 2, crop, crop
