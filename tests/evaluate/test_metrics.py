"""stvm.evaluate.metrics against an independent NumPy implementation (AdaptSegNet ``fast_hist``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stvm.data.labels import CLASS_NAMES, MIOU13_OF_16, PROTOCOL_CLASSES, protocol_class_names
from stvm.evaluate.metrics import (
    ConfusionMatrix,
    flatten_metrics,
    per_class_iou,
    protocol_matrix,
    scores_from_confusion,
)

# trainIds of the 16 / 13 protocols as written in formats.md §1.3 (independent of labels.py).
SET16 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]
SET13 = [0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]
ROAD, WALL, VEGETATION, TERRAIN, TRUCK, TRAIN = 0, 3, 8, 9, 14, 16


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """AdaptSegNet compute_iou.py: rows = ground truth ``a``, columns = prediction ``b``."""
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n**2).reshape(n, n)


def per_class_iu(hist: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))


def remap(trainids: np.ndarray, keep: list[int], outside: int) -> np.ndarray:
    """trainId -> position in ``keep``; anything else -> ``outside``."""
    out = np.full(trainids.shape, outside, dtype=np.int64)
    for i, t in enumerate(keep):
        out[trainids == t] = i
    return out


def random_pair(
    seed: int, size: int = 20000, absent: tuple[int, ...] = (5, 16)
) -> tuple[np.ndarray, np.ndarray]:
    """GT with ~10% ignore, predictions with ~40% noise; classes ``absent`` occur in neither."""
    rng = np.random.default_rng(seed)
    present = np.array([c for c in range(19) if c not in absent])
    gt = rng.choice(present, size)
    pred = np.where(rng.random(size) < 0.4, rng.choice(present, size), gt)
    gt[rng.random(size) < 0.1] = 255
    return pred, gt


def cm_of(pred: np.ndarray, gt: np.ndarray, n: int = 19) -> ConfusionMatrix:
    cm = ConfusionMatrix(n)
    cm.update(torch.from_numpy(pred), torch.from_numpy(gt))
    return cm


def test_matrix_and_scores_match_fast_hist_with_ignore_and_absent_classes():
    pred, gt = random_pair(0)
    cm = cm_of(pred, gt)
    ref = fast_hist(gt, pred, 19)
    assert cm.matrix.dtype == torch.int64 and tuple(cm.matrix.shape) == (19, 20)
    np.testing.assert_array_equal(cm.matrix[:, :19].numpy(), ref)
    assert cm.matrix[:, 19].sum() == 0
    scores = scores_from_confusion(cm.matrix, 19)
    ref_iou = per_class_iu(ref)
    assert math.isnan(ref_iou[5]) and math.isnan(ref_iou[16])
    assert scores["iou"]["pole"] is None and scores["iou"]["train"] is None
    for t, name in enumerate(CLASS_NAMES):
        if not math.isnan(ref_iou[t]):
            assert scores["iou"][name] == pytest.approx(ref_iou[t] * 100, abs=1e-9)
    assert scores["miou"] == pytest.approx(np.nanmean(ref_iou) * 100, abs=1e-9)
    valid = gt != 255
    assert scores["pixel_acc"] == pytest.approx((pred[valid] == gt[valid]).mean() * 100, abs=1e-9)
    assert scores["num_pixels"] == int(valid.sum())


def test_class_absent_from_gt_but_predicted_is_zero_not_nan():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 predicted, never in GT -> IoU 0
    scores = scores_from_confusion(cm_of(pred, gt).matrix, 19)
    assert scores["iou"]["building"] == 0.0
    assert scores["iou"]["road"] == pytest.approx(50.0)
    assert scores["miou"] == pytest.approx((50.0 + 100.0 + 0.0) / 3)


def test_prediction_outside_classes_counts_as_false_negative():
    gt = np.array([0, 0, 0, 0, 255])
    pred = np.array([0, 0, 255, 200, 7])  # 255/200 on road: misses; pred on ignored GT: nothing
    cm = cm_of(pred, gt)
    assert cm.matrix[0, 19] == 2 and cm.matrix.sum() == 4
    scores = scores_from_confusion(cm.matrix, 19)
    assert scores["iou"]["road"] == pytest.approx(50.0)
    assert scores["iou"]["traffic sign"] is None


def test_protocol16_matches_independent_remap():
    pred, gt = random_pair(1, absent=())  # terrain/truck/train present in GT and predictions
    scores = scores_from_confusion(cm_of(pred, gt).matrix, 16)
    gt16 = remap(gt, SET16, outside=255)  # GT outside the protocol -> ignore (convention (1))
    pred16 = remap(pred, SET16, outside=16)  # predictions outside -> extra "other" class
    ref_iou = per_class_iu(fast_hist(gt16, pred16, 17))[:16]
    assert list(scores["iou"]) == [CLASS_NAMES[t] for t in SET16]
    np.testing.assert_allclose(
        [scores["iou"][CLASS_NAMES[t]] for t in SET16], ref_iou * 100, atol=1e-9
    )
    assert scores["miou"] == pytest.approx(np.nanmean(ref_iou) * 100, abs=1e-9)
    # mIoU13 = mean of 13 of the 16 IoUs of the same matrix (not a re-scoring with 13 classes).
    assert scores["miou13"] == pytest.approx(
        np.mean([scores["iou"][CLASS_NAMES[t]] for t in SET13]), abs=1e-9
    )
    assert [protocol_class_names(16)[i] for i in MIOU13_OF_16] == [CLASS_NAMES[t] for t in SET13]
    # convention (2): 16 / 13 of the 19-class IoUs
    iou19 = per_class_iu(fast_hist(gt, pred, 19))
    assert scores["miou16_19conv"] == pytest.approx(np.nanmean(iou19[SET16]) * 100, abs=1e-9)
    assert scores["miou13_19conv"] == pytest.approx(np.nanmean(iou19[SET13]) * 100, abs=1e-9)
    assert scores["miou16_19conv"] <= scores["miou"]


def test_protocol16_ignores_terrain_truck_train_ground_truth():
    gt = np.array([VEGETATION, VEGETATION, TERRAIN, TRUCK, TRAIN])
    pred = np.array([VEGETATION, VEGETATION, VEGETATION, VEGETATION, VEGETATION])
    scores = scores_from_confusion(cm_of(pred, gt).matrix, 16)
    assert scores["iou"]["vegetation"] == pytest.approx(100.0)
    assert "terrain" not in scores["iou"] and scores["num_pixels"] == 2
    assert scores["miou16_19conv"] == pytest.approx(
        40.0
    )  # (2): vegetation FP on terrain/truck/train


def test_protocol13_predicted_wall_on_road_is_a_road_false_negative():
    gt = np.array([ROAD, ROAD, ROAD, ROAD, WALL])
    pred = np.array([ROAD, ROAD, ROAD, WALL, ROAD])
    scores = scores_from_confusion(cm_of(pred, gt).matrix, 13)
    assert scores["iou"]["road"] == pytest.approx(75.0)  # wall GT ignored, wall prediction = FN
    assert set(scores["iou"]) == {CLASS_NAMES[t] for t in SET13}
    assert "miou13" not in scores


def test_protocol_matrix_and_protocol_sized_matrix_agree():
    pred, gt = random_pair(2, absent=())
    m16 = protocol_matrix(cm_of(pred, gt).matrix, 16)
    assert m16.shape == (16, 17)
    direct = ConfusionMatrix(16)  # a 16-output model counted directly in protocol-index space
    direct.update(
        torch.from_numpy(remap(pred, SET16, 255)), torch.from_numpy(remap(gt, SET16, 255))
    )
    np.testing.assert_array_equal(direct.matrix.numpy(), m16)
    a, b = scores_from_confusion(m16, 16), scores_from_confusion(cm_of(pred, gt).matrix, 16)
    assert a["iou"] == b["iou"] and a["miou13"] == b["miou13"] and "miou16_19conv" not in a


def test_square_matrix_accepted():
    pred, gt = random_pair(3)
    ref = fast_hist(gt, pred, 19)
    assert scores_from_confusion(ref, 19) == scores_from_confusion(cm_of(pred, gt).matrix, 19)
    np.testing.assert_allclose(per_class_iou(ref), per_class_iu(ref), equal_nan=True)


def test_chunked_updates_merge_and_state_dict_equal_one_update():
    pred, gt = random_pair(4)
    whole = cm_of(pred.reshape(100, 200), gt.reshape(100, 200))
    chunks = ConfusionMatrix(19)
    for lo in range(0, pred.size, 3001):
        chunks.update(
            torch.from_numpy(pred[lo : lo + 3001]),
            torch.from_numpy(gt[lo : lo + 3001]).to(torch.uint8),
        )
    assert torch.equal(whole.matrix, chunks.matrix)
    half_a, half_b = cm_of(pred[:7000], gt[:7000]), cm_of(pred[7000:], gt[7000:])
    half_a.merge(half_b)
    assert torch.equal(whole.matrix, half_a.matrix)
    restored = ConfusionMatrix(19)
    restored.load_state_dict(whole.state_dict())
    assert torch.equal(whole.matrix, restored.matrix)
    with pytest.raises(ValueError):
        ConfusionMatrix(16).merge(whole)


def test_flatten_metrics_keys_and_nan_dropped():
    pred, gt = random_pair(5)
    scores = scores_from_confusion(cm_of(pred, gt).matrix, 16)
    flat = flatten_metrics(scores)
    assert flat["miou"] == scores["miou"] and flat["miou13"] == scores["miou13"]
    assert flat["iou/traffic_light"] == scores["iou"]["traffic light"]
    assert "iou/pole" not in flat  # absent class (NaN) is left out
    assert all(isinstance(v, float) and not math.isnan(v) for v in flat.values())
    assert "protocol" not in flat and "num_pixels" not in flat


def test_empty_matrix_gives_none_scores():
    scores = scores_from_confusion(np.zeros((19, 20), np.int64), 19)
    assert scores["miou"] is None and scores["pixel_acc"] is None
    assert flatten_metrics(scores) == {}


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        scores_from_confusion(np.zeros((15, 16)), 16)
    with pytest.raises(ValueError):
        ConfusionMatrix(19).update(torch.zeros(3), torch.zeros(4))
    assert PROTOCOL_CLASSES[16] == tuple(SET16) and PROTOCOL_CLASSES[13] == tuple(SET13)
