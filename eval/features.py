"""Backbones from checkpoints, and clip features of whole videos through the random-access reader."""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from train.augment import MEAN, STD
from shards.clips import center_box
from shards.errors import InputError
from shards.random_access import FrameReader, evenly_spaced_clips

POOLS = {
    # global average over time and space
    "avg": lambda f: f.mean(dim=(2, 3, 4)),
    # VCOP's retrieval features: max-pool 1x2x2 over the last conv block, then flatten
    "vcop": lambda f: F.max_pool3d(f, kernel_size=(1, 2, 2), stride=(1, 2, 2)).flatten(1),
}


# The authors test on frames resized to a 128-pixel short side, centre-cropped to 112.
SHORT_SIDE = 128

def add_model_args(p, shards_required: bool = True, test_clips: bool = True, required: bool = True,
                   clip_options: bool = True) -> None:
    """The options every eval script shares: what to evaluate, on which shards, with which clips
    (``test_clips=False``: the script has its own option for the number of test clips;
    ``clip_options=False``: clip length, crop, short side and seed are keys of the script's own config;
    ``required=False``: the script checks --ckpt and --shards itself, after options that need neither)."""
    p.add_argument("--ckpt", required=required, help="pretraining checkpoint (ckpt-*.pt), a run folder (its newest valid "
                   "checkpoint), a run's backbone.pt (beside its config.yaml), or 'none' for random initialisation")
    p.add_argument("--shards", required=shards_required and required, help="shard set (folder or URL) holding index.zarr"
                   + ("" if shards_required else "; required unless --features-in"))
    unset = argparse.SUPPRESS          # absent unless given: read with given(args, name)
    p.add_argument("--backbone", default=unset, help="backbone to build with --ckpt none (default r21d_10); a checkpoint names its "
                                      "own, and another one here is refused")
    p.add_argument("--width", type=float, default=unset, help="channel width multiplier with --ckpt none (default 1.0); a "
                                                "checkpoint's own, and another one here is refused")
    if test_clips:
        p.add_argument("--clips", type=int, default=10, help="evenly spaced clips per video at test time")
    if clip_options:
        p.add_argument("--clip-len", type=int, default=unset, help="frames per clip (default: the checkpoint's data.clip_len; 16 "
                                                    "with --ckpt none)")
        p.add_argument("--crop", type=int, default=unset,
                       help="side of the square centre crop, in pixels of frames seen at --short-side (default: the "
                            "checkpoint's data.out_size; 112 with --ckpt none)")
        p.add_argument("--short-side", type=int, default=unset,
                       help="frames stored larger are seen as if resized to this short side before the crop (the "
                            "authors' test transform: 128, then a 112 centre crop; default: the checkpoint's crop "
                            "x 128/112); smaller ones as stored")
        p.add_argument("--seed", type=int, default=0, help="seed of every random draw (and of --ckpt none's weights)")
    p.add_argument("--out", default="runs/eval", help="folder for the results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def given(args, name: str):
    """An option of :func:`add_model_args` that is absent unless given: its value, or None."""
    return getattr(args, name, None)


def check_crop(index, crop: int, short_side: int = SHORT_SIDE) -> None:
    """A crop the frames can give at ``short_side``, checked before any work starts."""
    h, w = int(index.attrs["height"]), int(index.attrs["width"])
    if short_side < 1:
        raise InputError(f"--short-side {short_side} must be at least 1")
    seen = min(short_side, h, w)
    if crop > seen:
        raise InputError(f"--crop {crop} is larger than the {seen}-pixel short side the {h}x{w} frames are seen at "
                         f"(--short-side {short_side}); use --crop {seen} or less")


def eval_box(height: int, width: int, crop: int, short_side: int = SHORT_SIDE) -> tuple[int, int, int, int]:
    """The centre box, in stored pixels, that a ``crop`` centre crop of the frame resized to
    ``short_side`` covers: so a set stored at 256x341 is evaluated at the scale of one at 128x171."""
    short = min(height, width)
    return center_box(height, width, min(short, round(crop * short / min(short_side, short))))


def clips_at(reader: FrameReader, row: int, idx: np.ndarray, crop: int, short_side: int = SHORT_SIDE) -> torch.Tensor:
    """[K, 3, T, crop, crop] uint8: the clips of frame numbers ``idx`` [K, T], centre crop, each frame read once."""
    needed = np.unique(idx)
    frames = reader.read_frames(row, needed)
    box = eval_box(int(reader.index.attrs["height"]), int(reader.index.attrs["width"]), crop, short_side)
    return torch.stack([reader.decoder.clip(frames, np.searchsorted(needed, c), box, 0, (crop, crop)) for c in idx])


def video_clips(reader: FrameReader, row: int, n_clips: int, clip_len: int, crop: int,
                short_side: int = SHORT_SIDE) -> torch.Tensor:
    """[n_clips, 3, T, crop, crop] uint8: evenly spaced clips of consecutive frames, centre crop."""
    return clips_at(reader, row, evenly_spaced_clips(int(reader.index.n_frames[row]), n_clips, clip_len), crop,
                    short_side)


def normalise(clips: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 clips (0-255) or float ones (0-1) standardised per channel, as the model was trained."""
    mean = torch.tensor(mean, device=clips.device, dtype=torch.float32).view(1, 3, 1, 1, 1)
    std = torch.tensor(std, device=clips.device, dtype=torch.float32).view(1, 3, 1, 1, 1)
    x = clips.float() / 255 if clips.dtype == torch.uint8 else clips.float()
    return (x - mean) / std


@torch.no_grad()
def extract(backbone, reader: FrameReader, rows, pool: str = "avg", n_clips: int = 10, clip_len: int = 16,
            crop: int = 112, batch_videos: int = 4, device=torch.device("cpu"), progress: bool = True,
            short_side: int = SHORT_SIDE, mean=MEAN, std=STD) -> np.ndarray:
    """[V, n_clips, D] float32 features of every clip of every video in ``rows`` (no video dropped)."""
    from tqdm import tqdm

    backbone.eval().to(device)
    out = []
    rows = list(rows)
    for s in tqdm(range(0, len(rows), batch_videos), disable=not progress, unit="batch", file=sys.stderr,
                  desc="features"):
        chunk = rows[s:s + batch_videos]
        clips = torch.cat([video_clips(reader, int(r), n_clips, clip_len, crop, short_side) for r in chunk]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            f = POOLS[pool](backbone.features(normalise(clips, mean, std)))
        out.append(f.float().cpu().view(len(chunk), n_clips, -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, n_clips, 0), np.float32)
