"""stvm.evaluate.score: cross-check with the official cityscapesScripts evaluator; input errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stvm.data.labels import CLASS_NAMES
from stvm.errors import StvmError
from stvm.evaluate.score import confusion_from_folders, score_folders

CITY = "testcity"
# Cityscapes ids used in the fixture GT: includes ignored ids 0 (unlabeled), 9 (parking),
# 14 (guard rail) and 29 (caravan); 31 (train) is left out so "train" is absent (IoU NaN).
GT_IDS = [0, 7, 8, 9, 11, 12, 13, 14, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 32, 33]
TRAIN = 16


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _blocky_ids(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A label image of random rectangles of Cityscapes ids."""
    lab = np.full((h, w), 7, dtype=np.uint8)
    for _ in range(25):
        y, x = rng.integers(0, h), rng.integers(0, w)
        lab[y : y + rng.integers(4, 20), x : x + rng.integers(4, 30)] = rng.choice(GT_IDS)
    return lab


@pytest.fixture(scope="module")
def cityscapes_fixture(tmp_path_factory):
    """Official-layout GT (labelIds, our trainIds) and noisy predictions in both label spaces."""
    from cityscapesscripts.helpers.labels import id2label, trainId2label

    root = tmp_path_factory.mktemp("cs")
    gt_dir, pred_dir, pred_ids_dir = (
        root / "gtFine" / "val" / CITY,
        root / "pred",
        root / "pred_ids",
    )
    id_to_train = np.full(256, 255, np.uint8)
    for i, label in id2label.items():
        if 0 <= label.trainId < 255:
            id_to_train[i] = label.trainId
    train_to_id = np.zeros(256, np.uint8)  # 255 (and anything else) -> id 0 "unlabeled" (ignored)
    for t in range(19):
        train_to_id[t] = trainId2label[t].id
    rng = np.random.default_rng(0)
    gt_files, pred_id_files = [], []
    for k in range(3):
        stem = f"{CITY}_000000_{k:06d}"
        ids = _blocky_ids(rng, 48, 64)
        train = id_to_train[ids]
        noise = rng.choice([c for c in range(19) if c != TRAIN], ids.shape).astype(np.uint8)
        pred = np.where((rng.random(ids.shape) < 0.25) | (train == 255), noise, train)
        pred[(rng.random(ids.shape) < 0.03) & (train != 255)] = 255  # "other": must count as FN
        _save(gt_dir / f"{stem}_gtFine_labelIds.png", ids)
        _save(gt_dir / f"{stem}_gtFine_labelTrainIds.png", train)
        _save(pred_dir / f"{stem}.png", pred)
        _save(pred_ids_dir / f"{stem}.png", train_to_id[pred])
        gt_files.append(str(gt_dir / f"{stem}_gtFine_labelIds.png"))
        pred_id_files.append(str(pred_ids_dir / f"{stem}.png"))
    return {
        "gt_dir": gt_dir,
        "pred_dir": pred_dir,
        "gt_files": gt_files,
        "pred_id_files": pred_id_files,
    }


def test_matches_official_cityscapes_evaluator(cityscapes_fixture, monkeypatch):
    monkeypatch.setattr(
        np, "in1d", np.isin, raising=False
    )  # removed in numpy 2.4, used by the package
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
    from cityscapesscripts.helpers.labels import trainId2label

    for name, value in [
        ("evalInstLevelScore", False),
        ("JSONOutput", False),
        ("quiet", True),
        ("evalPixelAccuracy", False),
    ]:
        monkeypatch.setattr(official.args, name, value)
    result = official.evaluateImgLists(
        cityscapes_fixture["pred_id_files"], cityscapes_fixture["gt_files"], official.args
    )
    # GT folder also holds *_gtFine_labelIds.png: those companions must be skipped, not matched.
    ours = score_folders(cityscapes_fixture["pred_dir"], cityscapes_fixture["gt_dir"], 19)
    assert ours["miou"] == pytest.approx(result["averageScoreClasses"] * 100, abs=0.01)
    for t, name in enumerate(CLASS_NAMES):
        official_iou = result["classScores"][trainId2label[t].name]
        if math.isnan(official_iou):
            assert ours["iou"][name] is None
        else:
            assert ours["iou"][name] == pytest.approx(official_iou * 100, abs=1e-6)
    assert ours["iou"]["train"] is None  # the fixture really exercises the NaN path
    assert 0 < ours["miou"] < 100


def test_other_protocols_use_the_same_matrix(cityscapes_fixture):
    from stvm.evaluate.metrics import scores_from_confusion

    matrix = confusion_from_folders(cityscapes_fixture["pred_dir"], cityscapes_fixture["gt_dir"])
    assert matrix.shape == (19, 20) and matrix[:, 19].sum() > 0
    assert score_folders(
        cityscapes_fixture["pred_dir"], cityscapes_fixture["gt_dir"], 16
    ) == scores_from_confusion(matrix, 16)


def _pair(tmp_path: Path, pred: np.ndarray, gt: np.ndarray, stem: str = "a") -> tuple[Path, Path]:
    _save(tmp_path / "pred" / f"{stem}.png", pred)
    _save(tmp_path / "gt" / f"{stem}.png", gt)
    return tmp_path / "pred", tmp_path / "gt"


def _error(pred_dir: Path, gt_dir: Path) -> str:
    with pytest.raises(StvmError) as err:
        score_folders(pred_dir, gt_dir, 19)
    assert "\n" not in str(err.value)
    return str(err.value)


GOOD = np.zeros((8, 10), np.uint8)


def test_exact_stem_match_scores(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, GOOD, GOOD)
    assert score_folders(pred_dir, gt_dir, 19)["miou"] == 100.0


def test_missing_folders_and_empty_predictions(tmp_path):
    _, gt_dir = _pair(tmp_path, GOOD, GOOD)
    assert _error(tmp_path / "nope", gt_dir).startswith(str(tmp_path / "nope"))
    assert _error(tmp_path / "pred", tmp_path / "nogt").startswith(str(tmp_path / "nogt"))
    (tmp_path / "empty").mkdir()
    assert "no prediction PNG" in _error(tmp_path / "empty", gt_dir)


def test_unmatched_files_both_ways(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, GOOD, GOOD)
    _save(pred_dir / "extra.png", GOOD)
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(pred_dir / "extra.png")) and "no ground truth" in msg
    (pred_dir / "extra.png").unlink()
    _save(gt_dir / "b_gtFine_labelTrainIds.png", GOOD)
    _save(gt_dir / "c.png", GOOD)
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(gt_dir / "b_gtFine_labelTrainIds.png")) and "1 more" in msg


def test_ambiguous_ground_truth_names(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, GOOD, GOOD)
    _save(gt_dir / "a_gtFine_labelTrainIds.png", GOOD)
    assert "also used by" in _error(pred_dir, gt_dir)


def test_size_mismatch(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, np.zeros((8, 12), np.uint8), GOOD)
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(pred_dir / "a.png")) and "12x8" in msg and "10x8" in msg


def test_multichannel_prediction(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, np.zeros((8, 10, 3), np.uint8), GOOD)
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(pred_dir / "a.png")) and "channels" in msg


@pytest.mark.parametrize("bad", [19, 200, 254])
def test_values_outside_trainids(tmp_path, bad):
    pred = GOOD.copy()
    pred[0, 0] = bad
    pred_dir, gt_dir = _pair(tmp_path, pred, GOOD)
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(pred_dir / "a.png")) and str(bad) in msg
    pred_dir, gt_dir = _pair(tmp_path / "g", GOOD, pred)
    assert _error(pred_dir, gt_dir).startswith(str(gt_dir / "a.png"))


def test_unreadable_png(tmp_path):
    pred_dir, gt_dir = _pair(tmp_path, GOOD, GOOD)
    (pred_dir / "a.png").write_bytes(b"not a png")
    msg = _error(pred_dir, gt_dir)
    assert msg.startswith(str(pred_dir / "a.png")) and "cannot read" in msg


def test_palette_and_16bit_single_channel_accepted(tmp_path):
    pal = Image.fromarray(GOOD).convert("P")
    (tmp_path / "pred").mkdir()
    pal.save(tmp_path / "pred" / "a.png")
    _save(tmp_path / "gt" / "a.png", GOOD.astype(np.uint16))
    assert score_folders(tmp_path / "pred", tmp_path / "gt", 19)["miou"] == 100.0
