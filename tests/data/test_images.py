"""stvm.data.images: the one input scaling, and the PNG readers and writer every stage shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stvm.data.images import (IMAGENET_MEAN, IMAGENET_STD, normalize, read_bytes, read_label, read_rgb,
                              read_trainid_png, standardize, to_float, write_png)
from stvm.errors import StvmError


def test_normalize_matches_imagenet_stats():
    img = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    x = normalize(img)
    assert x.shape == (3, 4, 6) and x.dtype == torch.float32
    ref = (img.astype(np.float64) / 255 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), ref, atol=1e-6)
    assert IMAGENET_MEAN.shape == IMAGENET_STD.shape == (3,)
    with pytest.raises(ValueError):
        normalize(img[..., 0])


def test_batch_and_single_image_scaling_are_the_same_arithmetic():
    img = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    batch = to_float(torch.from_numpy(img).permute(0, 3, 1, 2).contiguous())
    single = torch.stack([normalize(i) for i in img])
    assert torch.equal(batch, single)  # bit for bit: training and evaluation see the same input
    assert torch.equal(standardize(torch.ones(3, 1, 1)).flatten(), (1 - IMAGENET_MEAN) / IMAGENET_STD)


def test_write_png_round_trips_rgb_and_grey(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    lab = np.random.default_rng(3).integers(0, 19, (6, 9), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    write_png(tmp_path / "b.png", lab)
    assert np.array_equal(read_rgb(tmp_path / "a.png"), rgb)
    assert np.array_equal(read_label(tmp_path / "b.png"), lab)
    assert np.array_equal(read_trainid_png(tmp_path / "b.png"), lab)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporaries left


def test_readers_name_the_file(tmp_path):
    with pytest.raises(StvmError, match="nope.png.*cannot read file"):
        read_bytes(tmp_path / "nope.png")
    with pytest.raises(StvmError, match="nope.png.*cannot read label file"):
        read_trainid_png(tmp_path / "nope.png")
    rgb = np.zeros((4, 4, 3), np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    with pytest.raises(StvmError, match="rgb.png.*not a single-channel"):
        read_label(tmp_path / "rgb.png")
    bad = np.full((4, 4), 40, np.uint8)
    write_png(tmp_path / "bad.png", bad)
    with pytest.raises(StvmError, match="bad.png.*values 40 outside trainIds"):
        read_trainid_png(tmp_path / "bad.png")
