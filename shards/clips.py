"""Frames to clip tensors: the CPU decoder's functions under the names the rest of the project uses
(shards.decode holds the decoders themselves), and the centre box of evaluation."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .decode import CorruptFrame, SimpleJpegDecoder, clip_from_array

__all__ = ["CorruptFrame", "center_box", "clip_from_frames", "decode_jpegs"]


def decode_jpegs(jpegs: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """[n, H, W, 3] uint8 RGB of JPEGs that must all be ``height`` x ``width`` (the index's frame
    size, checked in each header before decoding); CorruptFrame names the position of a bad one."""
    return SimpleJpegDecoder().frames(jpegs, height, width)


def clip_from_frames(frames: np.ndarray, which, box: tuple[int, int, int, int], degrees: int,
                     size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """One clip as [3, T, h, w] uint8: frames ``which`` of [n, H, W, 3] ``frames``, cropped to ``box``
    (x, y, w, h), resized to ``size`` (antialiased bilinear: OpenCV's bilinear kernel, within one level,
    where the crop is enlarged on both sides; see shards.decode.clip_from_array), rotated
    counter-clockwise by ``degrees`` (a multiple of 90); written into ``out`` (a slot of a batch) where given."""
    return clip_from_array(frames, which, box, degrees, size, out)


def center_box(height: int, width: int, crop: int) -> tuple[int, int, int, int]:
    if crop > min(height, width):
        raise ValueError(f"centre crop {crop} is larger than the {height}x{width} frames")
    return (width - crop) // 2, (height - crop) // 2, crop, crop
