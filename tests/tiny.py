"""Tiny prepared datasets and params for loop tests (seconds on CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from stvm.config import AdaptParams, TrainSourceParams


def write_prepared(root: Path, n: int = 6, size: tuple[int, int] = (48, 32), labels: bool = True) -> tuple[Path, Path]:
    """Random-but-structured images with labels that depend on colour (learnable)."""
    rng = np.random.default_rng(0)
    img_dir, lab_dir = root / "images", root / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    w, h = size
    for i in range(n):
        lab = np.zeros((h, w), np.uint8)
        lab[: h // 3] = 10  # sky
        lab[h // 3 : 2 * h // 3] = 2  # building
        lab[2 * h // 3 :] = 0  # road
        x = int(rng.integers(0, w - 8))
        lab[h // 2 :, x : x + 8] = 13  # a car
        img = np.zeros((h, w, 3), np.uint8)
        for c, col in {10: (70, 130, 180), 2: (70, 70, 70), 0: (128, 64, 128), 13: (0, 0, 142)}.items():
            img[lab == c] = col
        img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(img_dir / f"{i:05d}.png"), img[..., ::-1])
        if labels:
            cv2.imwrite(str(lab_dir / f"{i:05d}.png"), lab)
    return img_dir, lab_dir


def train_params(**kw) -> TrainSourceParams:
    base = dict(arch="deeplabv2_r18", init="random", iterations=6, batch_size=2, crop=32, lr=1e-2, log_every=2,
                ckpt_every=3)
    return dataclasses.replace(TrainSourceParams(), **{**base, **kw})


def adapt_params(**kw) -> AdaptParams:
    base = dict(iterations=6, crop=32, log_every=2, ckpt_every=3, ema_interval=2, ema_lambda=0.5, buffer_size=3,
                n_mocm=2, samples_per_class=8, n_f=16)
    return dataclasses.replace(AdaptParams(), **{**base, **kw})


def source_model_and_target(root: Path) -> tuple[Path, Path]:
    """A 10-iteration source model (``root/source/model.pt``) and unlabelled target images, for adapt tests."""
    import warnings

    from stvm.train import train_source

    src = write_prepared(root / "src")
    tgt, _ = write_prepared(root / "tgt", labels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_source(train_params(iterations=10), images=src[0], labels=src[1], out=root / "source", protocol=19,
                     seed=0, device="cpu", show_progress=False)
    return root / "source/model.pt", tgt
