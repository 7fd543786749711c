"""Decoding as a stage: JPEG bytes -> frames -> clips, behind one interface.

Every path that turns a shard's JPEGs into pixels (the loader's workers, random access, evaluation's
feature extraction, ``verify``) asks a :class:`Decoder` for them, chosen by name from ``shards.decoders.DECODERS``
(``data.decode``): ``cpu`` (simplejpeg, here) or ``gpu`` (torchvision's nvJPEG decoder,
``shards.decode_torch``). Another decoder is one more class with ``frames`` and ``clip``.

Before any frame is decoded its JPEG header is read (a few microseconds) and its size compared with
the index's H x W: a frame whose header claims 60000 x 60000 pixels is a corrupt frame, named as
such, not a 10 GB allocation.
"""
from __future__ import annotations

import functools
from typing import Any, Protocol, Sequence

import numpy as np
import simplejpeg
import torch

from .errors import InputError, RunFailed



class CorruptFrame(ValueError):
    """A JPEG that does not decode, or whose header disagrees with the index; ``position`` is its
    place in the list given to the decoder."""

    def __init__(self, position: int, reason: str):
        super().__init__(f"frame {position}: {reason}")
        self.position, self.reason = position, reason


class CorruptFrameError(RunFailed):
    """A corrupt frame of a named shard and video (the message names both and the frame number)."""


def frame_error(shard: str, video: str, frames: Sequence[int], exc: CorruptFrame) -> CorruptFrameError:
    """``exc`` (from decoding JPEGs of ``frames``, in that order) as one line naming shard, video and
    the frame number within the video."""
    return CorruptFrameError(f"shard {shard}: video {video}: frame {int(frames[exc.position])}: {exc.reason}")


def check_headers(jpegs: Sequence[bytes], height: int, width: int) -> None:
    """Each JPEG's header size against the index's ``height`` x ``width``, before any decoding."""
    for i, j in enumerate(jpegs):
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(j)
        except ValueError as exc:
            raise CorruptFrame(i, f"JPEG header does not parse ({exc})") from None
        if (h, w) != (height, width):
            raise CorruptFrame(i, f"JPEG header says {h}x{w} pixels, the index says {height}x{width}")


class Decoder(Protocol):
    """JPEGs of one video to frames (``frames``), frames to a clip tensor (``clip``)."""

    name: str
    device: torch.device

    def frames(self, jpegs: Sequence[bytes], height: int, width: int, out: Any = None) -> Any:
        """The decoded frames, in the decoder's own layout; raises CorruptFrame naming the position."""

    def clip(self, frames: Any, which, box: tuple[int, int, int, int], degrees: int, size: tuple[int, int],
             out: torch.Tensor | None = None) -> torch.Tensor:
        """[3, T, h, w] uint8 on ``device``: frames ``which``, cropped to ``box`` (x, y, w, h), resized
        to ``size``, rotated counter-clockwise by ``degrees``."""


def as_slice(which) -> slice | np.ndarray:
    """``which`` as a slice where its positions are evenly spaced and increasing (a view, no gather),
    else as an index array. A clip of a pair is always such a run of the pair's needed frames."""
    which = np.asarray(which, np.int64)
    w = which.tolist()          # T plain ints: cheaper to compare than numpy's diff on so few
    step = w[1] - w[0] if len(w) > 1 else 1
    if step > 0 and all(b - a == step for a, b in zip(w, w[1:])):
        return slice(w[0], w[-1] + 1, step)
    return which


class SimpleJpegDecoder:
    """libjpeg-turbo through simplejpeg, the fastest CPU decoder installed here; frames are
    [n, H, W, 3] uint8 numpy arrays decoded straight into one array (``out``: a caller's buffer)."""

    name = "cpu"
    device = torch.device("cpu")

    def frames(self, jpegs: Sequence[bytes], height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
        check_headers(jpegs, height, width)
        if out is None or out.shape[0] < len(jpegs) or out.shape[1:] != (height, width, 3):
            out = np.empty((len(jpegs), height, width, 3), np.uint8)
        for i, j in enumerate(jpegs):
            try:
                # strict: a corrupt or truncated JPEG raises rather than giving grey pixels
                simplejpeg.decode_jpeg(j, colorspace="RGB", buffer=out[i], strict=True)
            except ValueError as exc:
                raise CorruptFrame(i, f"JPEG does not decode ({exc})") from None
        return out[:len(jpegs)]

    def clip(self, frames: np.ndarray, which, box, degrees, size, out=None) -> torch.Tensor:
        return clip_from_array(frames, which, box, degrees, size, out)


def clip_from_array(frames: np.ndarray, which, box: tuple[int, int, int, int], degrees: int,
                    size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """One clip as [3, T, h, w] uint8 from [n, H, W, 3] ``frames`` (see Decoder.clip).

    A crop enlarged on both sides (w <= size's width and h <= its height: nearly every crop of
    128x171 frames) is resized frame by frame by OpenCV's uint8 bilinear kernel, which is ~20% cheaper
    than torch's here and within one level of it (when enlarging, the antialiased filter is plain
    bilinear). A crop shrunk on either side goes through torch's uint8 channels-last antialiased
    bilinear kernel (what F.interpolate runs): OpenCV has no antialiased kernel as fast (INTER_AREA
    is ~4x slower at these scales, INTER_LINEAR aliases; bench/resize.py). Either kernel writes
    straight into ``out`` (a slot of a channels-last batch) where given; the crop is a view (no
    gather) where ``which`` is evenly spaced."""
    x, y, w, h = box
    k = (degrees // 90) % 4
    size = tuple(size)
    if w <= size[1] and h <= size[0]:
        slot = _frames_of(out) if out is not None and not k else None
        if slot is not None:
            _enlarge(frames, which, box, slot)
            return out
        r = torch.from_numpy(_enlarge(frames, which, box, np.empty((len(which), *size, 3), np.uint8))).permute(3, 0, 1, 2)
    else:
        t = torch.from_numpy(frames[as_slice(which), y:y + h, x:x + w]).permute(3, 0, 1, 2)     # [3, T, h, w] view
        if out is not None and not k:
            return _resize(t, size, out)
        r = _resize(t, size, None)
    r = _rotate(r, k)
    return r.contiguous() if out is None else out.copy_(r)


def _frames_of(out: torch.Tensor) -> np.ndarray | None:
    """A batch slot [3, T, h, w] as the [T, h, w, 3] array it is a view of, or None where it is not one."""
    f = out.permute(1, 2, 3, 0)
    return f.numpy() if f.is_contiguous() else None


@functools.cache
def _opencv():
    """OpenCV, imported where a crop is first enlarged (a loader worker, not every process that imports
    this module), with one thread: it resizes one small frame per call, and its own thread pool would
    only add threads beside the loader's worker processes (no faster per frame with 2 than with 1)."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _enlarge(frames: np.ndarray, which, box: tuple[int, int, int, int], dst: np.ndarray) -> np.ndarray:
    """Frames ``which`` of ``frames``, cropped to ``box``, bilinearly resized into [T, h, w, 3] ``dst``."""
    cv2 = _opencv()
    x, y, w, h = box
    size = (dst.shape[2], dst.shape[1])
    for t, i in enumerate(np.asarray(which).tolist()):
        cv2.resize(frames[i, y:y + h, x:x + w], size, dst=dst[t], interpolation=cv2.INTER_LINEAR)
    return dst


def _resize(t: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None) -> torch.Tensor:
    """[3, T, h, w] uint8 -> [3, T, *size], into ``out`` where given."""
    if tuple(t.shape[-2:]) == size:
        return t if out is None else out.copy_(t)
    frames = t.transpose(0, 1)                    # [T, 3, h, w], channels-last strides
    if out is not None and out.transpose(0, 1).is_contiguous(memory_format=torch.channels_last):
        torch.ops.aten._upsample_bilinear2d_aa.out(frames, list(size), False, None, None, out=out.transpose(0, 1))
        return out
    r = torch.ops.aten._upsample_bilinear2d_aa(frames, list(size), False, None, None).transpose(0, 1)
    return r if out is None else out.copy_(r)


def _rotate(t: torch.Tensor, k: int) -> torch.Tensor:
    return torch.rot90(t, k, dims=(2, 3)) if k else t
