"""train.augment: batched clip augmentation, one parameter draw per clip."""
from __future__ import annotations

import pytest
import torch

from train.augment import MEAN, STD, AugmentConfig, augment, augment_pair

OFF = AugmentConfig(p_jitter=0, p_gray=0, p_blur=0, p_flip=0, p_rotate=0, normalize=False)
FLIP_ONLY = AugmentConfig(p_base=0.0, normalize=False)      # the authors' 'null' transform


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


def dihedral(x):
    """{(quarter turns, flipped): the image} for the 8 rotations and mirror images of [..., H, W]."""
    return {(k, f): torch.rot90(x.flip(-1) if f else x, k, dims=(-2, -1)) for k in range(4) for f in (0, 1)}


def test_the_rotation_label_describes_the_pixels_the_network_sees():
    x = clips(b=64, t=2, seed=3)[..., :24, :24].contiguous()        # square, asymmetric noise
    g = torch.Generator().manual_seed(0)
    rot1, rot2 = torch.randint(0, 4, (64,), generator=g), torch.randint(0, 4, (64,), generator=g)
    v1, v2 = augment_pair({"clip1": x, "clip2": x, "rot1": rot1, "rot2": rot2}, FLIP_ONLY, g)
    flips = 0
    for view, labels in ((v1, rot1), (v2, rot2)):
        for i in range(64):
            matches = [kf for kf, img in dihedral(x[i].float() / 255).items() if torch.equal(img, view[i])]
            # exactly one of the eight: rot_k(maybe_flipped(clip)) with k the label, never the mirror angle
            assert len(matches) == 1 and matches[0][0] == int(labels[i]), (i, matches, int(labels[i]))
            flips += matches[0][1]
    assert 30 < flips < 98          # both flipped and unflipped clips occur


def test_rotation_labels_index_the_configured_angles():
    x = clips(b=2, t=1)[..., :24, :24].contiguous()
    v, _ = augment_pair({"clip1": x, "clip2": x, "rot1": torch.tensor([0, 1]), "rot2": torch.tensor([0, 0])},
                        AugmentConfig(**{**OFF.__dict__, "p_base": 0.0}), rotations=(0, 180))
    assert torch.equal(v[1], torch.rot90(x[1].float() / 255, 2, dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        augment_pair({"clip1": clips(b=1), "clip2": clips(b=1), "rot1": torch.tensor([1]), "rot2": torch.tensor([0])})


def test_the_base_transform_reaches_p_base_of_the_clips():
    x = clips(b=4000, t=1)[..., :4, :4].contiguous()
    zero = torch.zeros(4000, dtype=torch.long)
    only_jitter = AugmentConfig(**{**OFF.__dict__, "p_base": 0.3, "p_jitter": 1.0})
    v, _ = augment_pair({"clip1": x, "clip2": x, "rot1": zero, "rot2": zero}, only_jitter, torch.Generator().manual_seed(4))
    changed = (v - x.float() / 255).abs().flatten(1).amax(1) > 1e-6
    assert abs(changed.float().mean().item() - 0.3) < 0.03     # 4000 clips: 4 standard deviations
    v, _ = augment_pair({"clip1": x, "clip2": x, "rot1": zero, "rot2": zero},
                        AugmentConfig(**{**only_jitter.__dict__, "p_base": 0.0}))
    assert torch.equal(v, x.float() / 255)


def test_the_config_is_a_structured_omegaconf_section_with_authors_defaults():
    from omegaconf import OmegaConf

    c = OmegaConf.structured(AugmentConfig)
    assert AugmentConfig(**OmegaConf.to_container(c)) == AugmentConfig()
    a = AugmentConfig()
    assert (a.p_base, a.p_jitter, a.p_gray, a.p_blur, a.max_degrees, a.p_flip) == (0.3, 0.8, 0.2, 0.5, 10.0, 0.5)
