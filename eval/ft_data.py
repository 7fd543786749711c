"""Fine-tuning's clips as tensors: a training clip (frames by the authors' rule, their random-sized
crop, the rotation augmentation) read on the CPU, its colour augmentation on the device, and the
centre-cropped clips of validation and test."""
from __future__ import annotations

import numpy as np
import torch

from eval.features import clips_at
from eval.ft_clips import draw, eligible_rates, random_sized_box, train_clip_indices
from eval.ft_config import FinetuneConfig
from train.augment import AugmentConfig
from shards.clips import clip_from_frames
from shards.random_access import evenly_spaced_clips


def random_clip(reader, row: int, cfg: FinetuneConfig, rng: np.random.Generator) -> torch.Tensor:
    """[3, T, crop, crop] uint8: a training clip of video ``row``."""
    c, a = cfg.clips, cfg.augment
    n = int(reader.index.n_frames[row])
    rate = draw(rng, eligible_rates(n, c.clip_len, c.stride, cfg.rates))
    idx = train_clip_indices(n, c.clip_len, c.stride * rate, rng)
    needed = np.unique(idx)
    frames = reader.read_frames(row, needed)
    h, w = frames.shape[1:3]
    box = random_sized_box(h, w, tuple(a.area), tuple(a.aspect), a.attempts, rng)
    return clip_from_frames(frames, np.searchsorted(needed, idx), box, draw(rng, cfg.rotations), (c.crop, c.crop))


def device_augment(cfg: FinetuneConfig) -> AugmentConfig:
    """The per-clip colour augmentation (and flip, off by default) that runs on the batch's device
    (0-1 floats out: the caller standardises them with clips.mean/std)."""
    a = cfg.augment
    return AugmentConfig(p_base=1.0, p_jitter=a.p_jitter, brightness=a.brightness, contrast=a.contrast,
                         saturation=a.saturation, hue=a.hue, p_gray=a.p_gray, p_blur=a.p_blur,
                         blur_sigma=tuple(a.blur_sigma), p_rotate=0.0, p_flip=a.p_flip, normalize=False)


def val_clip_indices(n_frames: int, cfg: FinetuneConfig, rng: np.random.Generator) -> np.ndarray:
    """[val_clips, clip_len]: random starts (the authors' validation clip, redrawn each epoch) or evenly spaced."""
    c, e = cfg.clips, cfg.eval
    if e.val_random:
        return np.stack([train_clip_indices(n_frames, c.clip_len, c.stride, rng) for _ in range(e.val_clips)])
    return evenly_spaced_clips(n_frames, e.val_clips, c.clip_len, c.stride)


def centre_clips(reader, row: int, idx: np.ndarray, cfg: FinetuneConfig) -> torch.Tensor:
    """[K, 3, T, crop, crop] uint8: the authors' test transform (short side, centre crop) on clips ``idx``."""
    return clips_at(reader, row, idx, cfg.clips.crop, cfg.clips.short_side)
