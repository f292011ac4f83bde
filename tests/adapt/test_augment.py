"""stvm.adapt.augment: photometric noise is deterministic given the generator and does its job."""

from __future__ import annotations

import torch

from stvm.adapt.augment import photometric, rand_on


def images(seed: int = 0, b: int = 4, h: int = 12, w: int = 10) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_deterministic_given_generator_and_changes_image():
    x = images()
    a = photometric(x, torch.Generator().manual_seed(1))
    b = photometric(x, torch.Generator().manual_seed(1))
    c = photometric(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a, x, atol=1e-3)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1


def test_generator_state_advances():
    g = torch.Generator().manual_seed(3)
    x = images(b=8)
    first = photometric(x, g, p_jitter=1.0, p_blur=1.0)
    second = photometric(x, g, p_jitter=1.0, p_blur=1.0)
    assert not torch.equal(first, second)


def test_zero_probabilities_are_identity():
    x = images()
    assert torch.equal(
        photometric(x, torch.Generator().manual_seed(0), p_jitter=0.0, p_blur=0.0), x
    )


def test_brightness_only_scales_each_image_within_range():
    x = images() * 0.5  # no clipping at 1.2x
    out = photometric(
        x,
        torch.Generator().manual_seed(4),
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        p_jitter=1.0,
        p_blur=0.0,
    )
    ratio = out / x
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-4)
    assert ((per_image[:, 0] >= 0.8 - 1e-5) & (per_image[:, 0] <= 1.2 + 1e-5)).all()
    assert per_image[:, 0].unique().numel() == x.shape[0]  # different factor per image


def test_gray_images_unaffected_by_saturation_and_hue_and_blur_keeps_constants():
    gray = torch.full((3, 3, 8, 8), 0.4)
    out = photometric(
        gray,
        torch.Generator().manual_seed(5),
        brightness=0.0,
        contrast=0.0,
        p_jitter=1.0,
        p_blur=1.0,
    )
    assert torch.allclose(out, gray, atol=1e-5)


def test_blur_smooths_an_impulse():
    x = torch.zeros(1, 3, 9, 9)
    x[..., 4, 4] = 1.0
    out = photometric(x, torch.Generator().manual_seed(6), p_jitter=0.0, p_blur=1.0)
    assert out[..., 4, 4].max() < 1.0 and out[..., 4, 5].min() > 0.0
    assert torch.allclose(out.sum((2, 3)), x.sum((2, 3)), atol=1e-4)  # normalised kernel, mass kept


def test_rand_on_moves_to_device_and_is_reproducible():
    a = rand_on(torch.Generator().manual_seed(0), (5,), "cpu")
    b = rand_on(torch.Generator().manual_seed(0), (5,), "cpu")
    assert torch.equal(a, b) and ((a >= 0) & (a < 1)).all()


def test_no_host_sync_on_meta_device():
    out = photometric(
        torch.rand(2, 3, 16, 16, device="meta"), torch.Generator(), p_jitter=1.0, p_blur=1.0
    )
    assert out.shape == (2, 3, 16, 16) and out.device.type == "meta"
