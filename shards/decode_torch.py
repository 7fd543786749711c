"""Decoding on the training device (``data.decode: gpu``): torchvision's ``decode_jpeg`` (nvJPEG,
batched, on CUDA), then crop and resize there.

With it the loader's workers only read JPEG bytes, check their headers and draw each pair's
geometry (``new_encoded_batch``, ``add_encoded``); the training process turns such a batch into the
batch contract's uint8 clips on the device (:class:`DeviceStage`), where the flip and the labelled
rotation follow as with CPU decoding (train.augment). So a GPU needs few CPU cores.

The same code runs on the CPU (``TorchvisionDecoder("cpu")``, torchvision's libjpeg decoder): that
is how it is tested without a GPU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .decode import CorruptFrame, CorruptFrameError, as_slice, check_headers
from .errors import InputError, one_line
from .pairs import BOXES, FRAMES, INDICES, geometry_slots, put_geometry
from .sampling import PairSample


class TorchvisionDecoder:
    """Frames are [n, 3, H, W] uint8 tensors on ``device`` (CUDA unless told otherwise)."""

    name = "gpu"

    def __init__(self, device=None):
        device = torch.device("cuda" if device is None else device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("data.decode=gpu decodes with CUDA, and torch.cuda.is_available() is False on this "
                             "machine; use data.decode=cpu")
        self.device = device

    def frames(self, jpegs: Sequence[bytes], height: int, width: int, out=None) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        check_headers(jpegs, height, width)
        data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
        try:
            return torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            pass
        for i, d in enumerate(data):        # which one: the batched call does not say
            try:
                decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError as exc:
                raise CorruptFrame(i, f"JPEG does not decode ({one_line(exc)})") from None
        raise CorruptFrame(0, "the batch of JPEGs does not decode, though each one does alone")

    def clip(self, frames: torch.Tensor, which, box, degrees, size, out=None) -> torch.Tensor:
        """[3, T, h, w] uint8 on the device; the antialiased bilinear resize runs in float (CUDA has no
        uint8 kernel for it), rounded back to uint8 as the CPU kernel rounds."""
        x, y, w, h = box
        t = frames[as_slice(which), :, y:y + h, x:x + w]                     # [T, 3, h, w]
        if tuple(t.shape[-2:]) != tuple(size):
            t = F.interpolate(t.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
            t = t.round_().clamp_(0, 255).to(torch.uint8)
        k = (degrees // 90) % 4
        if k:
            t = torch.rot90(t, k, dims=(2, 3))
        t = t.transpose(0, 1)
        return t.contiguous() if out is None else out.copy_(t)


def new_encoded_batch(batch_size: int, clip_len: int) -> dict:
    """A worker's batch for device decoding: each pair's needed frames as JPEG bytes, its geometry and
    its labels (as in pairs.new_batch)."""
    return {"jpegs": [], "needed": [], "where": [], **geometry_slots(batch_size, clip_len)}


def add_encoded(batch: dict, i: int, p: PairSample, needed: np.ndarray, jpegs: list[bytes], label: int,
                video_id: str, shard: str) -> None:
    """Slot ``i`` of an encoded batch: what DeviceStage needs to make the pair's clips."""
    batch["jpegs"].append(jpegs)
    batch["needed"].append(needed)
    batch["where"].append((shard, video_id))
    put_geometry(batch, i, p, label, video_id)


class DeviceStage:
    """An encoded batch -> the batch contract (clip1, clip2 uint8 [B, 3, T, h, w], labels), on the
    decoder's device: all of the batch's JPEGs in one decode call, then each clip cropped and resized."""

    def __init__(self, decoder, out_size: tuple[int, int], height: int, width: int):
        self.decoder, self.out_size, self.height, self.width = decoder, tuple(out_size), height, width

    def __call__(self, batch: dict) -> dict:
        dev, counts = self.decoder.device, [len(j) for j in batch["jpegs"]]
        flat = [j for js in batch["jpegs"] for j in js]
        first = np.cumsum([0] + counts)
        try:
            frames = self.decoder.frames(flat, self.height, self.width)
        except CorruptFrame as exc:
            s = int(np.searchsorted(first, exc.position, side="right")) - 1
            shard, video = batch["where"][s]
            raise CorruptFrameError(f"shard {shard}: video {video}: frame "
                                    f"{int(batch['needed'][s][exc.position - first[s]])}: {exc.reason}") from None
        B, T = len(counts), batch["idx1"].shape[1]
        out = {k: batch[k].to(dev, non_blocking=True) for k in (*INDICES, "label", *FRAMES, *BOXES)}
        for c in ("clip1", "clip2"):
            out[c] = torch.empty((B, 3, T, *self.out_size), dtype=torch.uint8, device=dev)
        for s in range(B):
            mine, needed = frames[first[s]:first[s + 1]], batch["needed"][s]
            for c, idx, box in (("clip1", "idx1", "box1"), ("clip2", "idx2", "box2")):
                which = np.searchsorted(needed, batch[idx][s].numpy())
                self.decoder.clip(mine, which, tuple(batch[box][s].tolist()), 0, self.out_size, out[c][s])
        out["video_id"] = batch["video_id"]
        return out

