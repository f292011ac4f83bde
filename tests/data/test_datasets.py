import cv2
import numpy as np
import pytest
import torch

from stvm.data.datasets import CropDataset, IterationBatches, random_crop
from stvm.errors import StvmError


def _write(folder, stem, arr):
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), arr)


@pytest.fixture
def prepared(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        _write(tmp_path / "images", f"{i:05d}", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
        lab = np.full((20, 30), i, np.uint8)
        lab[0, 0] = 255
        _write(tmp_path / "labels", f"{i:05d}", lab)
    return tmp_path


def test_batches_are_a_pure_function_of_seed_and_iteration():
    a = IterationBatches(7, 2, seed=3, start=0, total=10)
    b = IterationBatches(7, 2, seed=3, start=6, total=10)
    assert list(a)[6:] == list(b)
    assert list(IterationBatches(7, 2, seed=4, start=0, total=10)) != list(a)


def test_each_epoch_visits_every_sample_once():
    s = IterationBatches(6, 2, seed=0, start=0, total=3)
    idx = [k[0] for batch in s for k in batch]
    assert sorted(idx) == list(range(6))


def test_ranks_take_disjoint_slots_of_the_same_sequence():
    single = [k[0] for b in IterationBatches(8, 1, 0, 0, 8) for k in b]
    r0 = [k[0] for b in IterationBatches(8, 1, 0, 0, 4, rank=0, world=2) for k in b]
    r1 = [k[0] for b in IterationBatches(8, 1, 0, 0, 4, rank=1, world=2) for k in b]
    assert single[0::2] == r0 and single[1::2] == r1


def test_crop_dataset_is_deterministic_and_labels_follow_images(prepared):
    lut = np.arange(256, dtype=np.uint8)
    ds = CropDataset(prepared / "images", prepared / "labels", crop=16, hflip=True, lut=lut)
    img1, lab1, i1 = ds[(2, (0, 1, 0, 0))]
    img2, lab2, _ = ds[(2, (0, 1, 0, 0))]
    assert torch.equal(img1, img2) and torch.equal(lab1, lab2)
    assert img1.shape == (3, 16, 16) and lab1.dtype == torch.int64
    assert set(lab1.unique().tolist()) <= {2, 255}


def test_crop_pads_small_images_with_ignore():
    img = np.ones((4, 6, 3), np.uint8)
    lab = np.zeros((4, 6), np.uint8)
    ci, cl = random_crop(img, lab, 8, np.random.default_rng(0))
    assert ci.shape == (8, 8, 3) and (cl == 255).sum() == 64 - 24


def test_missing_label_is_a_user_error(prepared):
    (prepared / "labels" / "00003.png").unlink()
    with pytest.raises(StvmError, match="00003.png: label missing"):
        CropDataset(prepared / "images", prepared / "labels", 16, False, None)
    with pytest.raises(StvmError, match="folder not found"):
        CropDataset(prepared / "nope", None, 16, False, None)
