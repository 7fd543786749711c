"""shards.augment: batched clip augmentation, one parameter draw per clip."""
from __future__ import annotations

import pytest
import torch

from shards.augment import MEAN, STD, AugmentConfig, augment

OFF = AugmentConfig(p_jitter=0, p_gray=0, p_blur=0, p_flip=0, p_rotate=0, normalize=False)


def clips(b=4, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    frame = torch.randint(0, 256, (b, 3, 1, 24, 32), generator=g, dtype=torch.uint8)
    return frame.expand(b, 3, t, 24, 32).contiguous()     # every frame of a clip identical


def test_identity_when_everything_is_off():
    x = clips()
    assert torch.allclose(augment(x, OFF), x.float() / 255)


def test_one_draw_per_clip_shared_by_its_frames():
    x = clips()
    y = augment(x, AugmentConfig(normalize=False, p_jitter=1, p_blur=1, p_rotate=1, p_gray=0.5, p_flip=0.5),
                generator=torch.Generator().manual_seed(1))
    for i in range(x.shape[0]):
        for t in range(1, x.shape[2]):
            assert torch.allclose(y[i, :, t], y[i, :, 0], atol=1e-6)
    # and different clips got different parameters
    same_input = clips(b=1).expand(4, -1, -1, -1, -1).contiguous()
    z = augment(same_input, AugmentConfig(normalize=False, p_jitter=1, p_blur=0, p_rotate=0),
                generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(z[0], z[1])


def test_flip_and_grayscale():
    x = clips()
    y = augment(x, AugmentConfig(**{**OFF.__dict__, "p_flip": 1.0}))
    assert torch.allclose(y, (x.float() / 255).flip(-1))
    g = augment(x, AugmentConfig(**{**OFF.__dict__, "p_gray": 1.0}))
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])


def test_blur_smooths_and_keeps_the_mean():
    x = clips()
    y = augment(x, AugmentConfig(**{**OFF.__dict__, "p_blur": 1.0, "blur_sigma": (1.5, 1.5)}))
    base = x.float() / 255
    assert y.std() < base.std()
    assert abs(y.mean() - base.mean()) < 0.01


def test_normalisation_and_shape_errors():
    x = torch.full((2, 3, 4, 8, 8), 255, dtype=torch.uint8)
    y = augment(x, AugmentConfig(**{**OFF.__dict__, "normalize": True}))
    assert torch.allclose(y[:, 0], torch.full_like(y[:, 0], (1 - MEAN[0]) / STD[0]))
    with pytest.raises(ValueError, match="B x 3 x T x H x W"):
        augment(torch.zeros(3, 4, 8, 8, dtype=torch.uint8))
