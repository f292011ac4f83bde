"""Torch datasets over a *prepared* folder, with randomness derived from (seed, iteration, slot).

Every random choice (which file, which crop, flip or not) is a pure function of the run seed, the
iteration and the position in the batch. Resuming at iteration k therefore replays exactly the batches
an uninterrupted run would have seen, with no sampler state to save, and DDP ranks take disjoint
slots of the same global sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stvm.limits import check_pixels

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from stvm.data.images import read_bytes, read_label, read_rgb
from stvm.data.labels import IGNORE
from stvm.errors import ParamError, StvmError



def list_stems(folder: Path) -> list[str]:
    """Sorted PNG stems of a prepared folder; an empty or missing folder is a user error."""
    if not folder.is_dir():
        raise StvmError(folder, "folder not found (run the prepare stage first)")
    stems = sorted(p.stem for p in folder.glob("*.png"))
    if not stems:
        raise StvmError(folder, "no PNG files")
    return stems


def check_same_size(image: np.ndarray, label: np.ndarray, label_path: Path) -> None:
    """A prepared label must have its image's size: a crop of a misaligned pair trains on garbage."""
    if image.shape[:2] != label.shape[:2]:
        raise StvmError(label_path, f"label size {label.shape[1]}x{label.shape[0]} differs from its image's "
                                    f"{image.shape[1]}x{image.shape[0]} (prepared data corrupt? run prepare again)")


def prepared_size(folder: Path) -> tuple[int, int]:
    """(width, height) of a prepared image folder: its first image's, read from the header (prepare
    writes every image of a split at one size)."""
    first = Path(folder) / f"{list_stems(Path(folder))[0]}.png"
    size = check_pixels(read_bytes(first), first)
    if size is None:
        raise StvmError(first, "unreadable image")
    return size


class CropDataset(Dataset):
    """Random crops (and flips) of prepared images, optionally with labels mapped by ``lut``.

    Items are addressed as ``(index, seed_key)``; ``seed_key`` seeds the crop/flip generator.
    Returns ``(image uint8 3xHxW, label int64 HxW or empty, index)``. A crop larger than the frames
    is refused (a ``ParamError`` naming the params ``key``): it would train on padding.
    """

    def __init__(self, images: Path, labels: Path | None, crop: int, hflip: bool, lut: np.ndarray | None,
                 key: str = "crop") -> None:
        self.images, self.labels, self.crop, self.hflip, self.lut = images, labels, crop, hflip, lut
        self.stems = list_stems(images)
        w, h = prepared_size(images)
        if crop > min(w, h):
            raise ParamError(None, f"{key}: {crop} is larger than the frames in {images} ({w}x{h}); "
                                   f"at most {min(w, h)}")
        if labels is not None:
            missing = sorted(set(self.stems) - set(list_stems(labels)))
            if missing:
                raise StvmError(labels / f"{missing[0]}.png", "label missing for a prepared image")

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, key: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, seed_key = key
        stem = self.stems[index]
        img = read_rgb(self.images / f"{stem}.png")
        lab = read_label(self.labels / f"{stem}.png") if self.labels is not None else None
        if lab is not None:
            check_same_size(img, lab, self.labels / f"{stem}.png")
        if lab is not None and self.lut is not None:
            lab = self.lut[lab]
        rng = np.random.default_rng(list(seed_key))
        img, lab = random_crop(img, lab, self.crop, rng)
        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
            lab = lab[:, ::-1] if lab is not None else None
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        label = torch.from_numpy(lab.astype(np.int64)) if lab is not None else torch.empty(0, dtype=torch.int64)
        return image, label, index


def random_crop(
    img: np.ndarray, lab: np.ndarray | None, crop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``crop``x``crop`` window (padded with 0 / ignore when the image is smaller)."""
    h, w = img.shape[:2]
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE) if lab is not None else None
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    img = img[y : y + crop, x : x + crop]
    lab = lab[y : y + crop, x : x + crop] if lab is not None else None
    return img, lab


class IterationBatches(Sampler):
    """Yields, for iterations ``start..total-1``, this rank's batch of ``(index, seed_key)`` keys.

    Global sample position ``p = (it * world + rank) * batch + j`` walks through one permutation
    of the dataset per epoch (``default_rng([seed, epoch])``), so the order is a pure function of
    the seed and the iteration.
    """

    def __init__(self, n: int, batch: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed, self.start, self.total = n, batch, seed, start, total
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def batch_keys(self, it: int) -> list[tuple[int, tuple[int, ...]]]:
        """The keys of iteration ``it`` for this rank."""
        keys = []
        for j in range(self.batch):
            p = (it * self.world + self.rank) * self.batch + j
            keys.append((int(self._perm(p // self.n)[p % self.n]), (self.seed, it, self.rank, j)))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        for it in range(self.start, self.total):
            yield self.batch_keys(it)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)
