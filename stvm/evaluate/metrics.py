"""Confusion matrix and every user-facing segmentation score (the one implementation).

Scoring convention (formats.md §5.1, §5.3):

* One confusion matrix is accumulated over the whole evaluation set (not a mean of per-image IoUs).
  IoU = TP / (TP + FP + FN); a class absent from both ground truth and prediction has IoU NaN
  (reported as ``None``) and drops out of the mean (``nanmean``). Scores are percentages (0-100).
* The matrix has ``n`` ground-truth rows and ``n + 1`` prediction columns. The extra last column,
  "other", counts predictions that are not one of the ``n`` classes (a trainId outside the protocol,
  or 255). Such a prediction on a valid pixel is a false negative of the true class and a false
  positive of nobody, exactly like the official cityscapesScripts evaluator treats a predicted
  ignored id. It must not silently vanish, which is what happens if it is dropped like ignored GT.
* Evaluation accumulates the **19-class trainId matrix**; the protocol matrix is derived from it
  (``protocol_matrix``). Protocol 16/13 headline numbers follow convention (1) of formats.md §5.3
  (ProDA, MaxSquareLoss, the column names of STvM Table II): ground truth of classes outside the
  protocol (16: terrain, truck, train) is ignored, ``miou`` is the mean of the protocol IoUs, and
  for protocol 16 ``miou13`` is the nanmean of 13 of those 16 IoUs (``MIOU13_OF_16``) of the same
  matrix.
* Convention (2) (FDA-style: score all 19 classes, then average 16 or 13 of the 19 IoUs, so terrain/
  truck/train GT pixels count as false positives of whatever was predicted there) is reported next
  to it as ``miou16_19conv`` / ``miou13_19conv`` whenever the matrix is the 19-class one. Under (2)
  every per-class IoU is <= its value under (1); it is for comparison with papers that used it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from stvm.data.labels import CLASS_NAMES, MIOU13_OF_16, PROTOCOL_CLASSES, protocol_class_names


class ConfusionMatrix:
    """An ``n x (n+1)`` int64 confusion matrix (rows: ground truth, columns: prediction + "other").

    ``update`` takes integer class maps of the same shape. Ground truth outside ``[0, n)`` (255) is
    ignored; a prediction outside ``[0, n)`` lands in the "other" column (a false negative). The
    counting is one fixed-size ``scatter_add_`` on the tensors' device with no Python loop per pixel, no
    data-dependent output size and no ``.item()``/``.cpu()``, so it does not sync a GPU evaluation loop.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.device = torch.device(device)
        self._counts = torch.zeros(
            num_classes * (num_classes + 1), dtype=torch.int64, device=self.device
        )

    @property
    def matrix(self) -> torch.Tensor:
        """The ``(n, n+1)`` int64 counts; column ``n`` ("other"): predictions outside the n classes."""
        return self._counts.view(self.num_classes, self.num_classes + 1)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of predictions and ground truth (integer tensors of the same shape)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        n = self.num_classes
        pred = pred.to(self.device, torch.int64).reshape(-1)
        target = target.to(self.device, torch.int64).reshape(-1)
        pred = torch.where((pred >= 0) & (pred < n), pred, n)
        index = target * (n + 1) + pred
        # Ignored ground truth goes to one trash bin past the end, dropped after counting: a boolean
        # mask would need a host sync to size its output.
        trash = n * (n + 1)
        index = torch.where((target >= 0) & (target < n), index, trash)
        # scatter_add_ into a fixed-size buffer: torch.bincount sizes its output from the data (a host
        # sync on CUDA); this stays on the device, and integer sums are exact in any order.
        counts = torch.zeros(trash + 1, dtype=torch.int64, device=self.device)
        counts.scatter_add_(0, index, torch.ones_like(index))
        self._counts += counts[:trash]

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from another process or another part of the set)."""
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge {other.num_classes}-class into {self.num_classes}-class matrix"
            )
        self._counts += other._counts.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state (counts on the CPU)."""
        return {"num_classes": self.num_classes, "matrix": self.matrix.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore counts saved by ``state_dict``."""
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"state has {state['num_classes']} classes, matrix has {self.num_classes}"
            )
        counts = torch.as_tensor(state["matrix"], dtype=torch.int64).reshape(-1)
        if counts.numel() != self._counts.numel():
            raise ValueError(
                f"state matrix has {counts.numel()} entries, expected {self._counts.numel()}"
            )
        self._counts = counts.to(self.device).clone()


def _as_numpy(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] not in (matrix.shape[0], matrix.shape[0] + 1):
        raise ValueError(f"confusion matrix must be (n, n) or (n, n+1), got {matrix.shape}")
    if matrix.shape[1] == matrix.shape[0]:  # no "other" column: add an empty one
        matrix = np.concatenate([matrix, np.zeros((matrix.shape[0], 1), matrix.dtype)], axis=1)
    return matrix.astype(np.int64)


def protocol_matrix(matrix19: np.ndarray | torch.Tensor, protocol: int) -> np.ndarray:
    """Derive the ``(k, k+1)`` protocol matrix from a 19-class trainId matrix (convention (1)).

    Rows of classes outside the protocol are dropped (that GT is ignored); predictions of classes
    outside the protocol are moved to the "other" column (false negatives of the true class).
    """
    m = _as_numpy(matrix19)
    if m.shape[0] != len(CLASS_NAMES):
        raise ValueError(f"expected a {len(CLASS_NAMES)}-class matrix, got {m.shape}")
    keep = list(PROTOCOL_CLASSES[protocol])
    rows = m[keep]
    inside = rows[:, keep]
    other = rows.sum(axis=1) - inside.sum(axis=1)
    return np.concatenate([inside, other[:, None]], axis=1)


def per_class_iou(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class as fractions; NaN where TP + FP + FN = 0."""
    m = _as_numpy(matrix)
    n = m.shape[0]
    tp = np.diag(m[:, :n]).astype(np.float64)
    fp = m[:, :n].sum(axis=0) - tp
    fn = m.sum(axis=1) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def _pct_mean(iou: np.ndarray, index: list[int] | tuple[int, ...] | None = None) -> float | None:
    values = iou if index is None else iou[list(index)]
    values = values[~np.isnan(values)]
    return float(values.mean() * 100.0) if values.size else None


def _pct(value: float) -> float | None:
    return None if math.isnan(value) else float(value * 100.0)


def scores_from_confusion(matrix: np.ndarray | torch.Tensor, protocol: int) -> dict[str, Any]:
    """All scores of one protocol from a 19-class trainId matrix or a protocol-sized matrix.

    The matrix may be ``(n, n)`` or ``(n, n+1)`` (with the "other" column). With 19 rows it is the
    trainId matrix: the protocol matrix is derived from it and the convention-(2) extras
    ``miou16_19conv``/``miou13_19conv`` are added. With ``len(PROTOCOL_CLASSES[protocol])`` rows it
    is already in protocol-index order. Returns ``miou``, ``iou`` {class name: percent or None},
    ``miou13`` (protocol 16), ``pixel_acc`` (percent of valid pixels predicted correctly),
    ``protocol`` and ``num_pixels`` (valid ground-truth pixels counted).
    """
    if protocol not in PROTOCOL_CLASSES:
        raise ValueError(f"unknown protocol {protocol}; expected one of {sorted(PROTOCOL_CLASSES)}")
    full = _as_numpy(matrix)
    k = len(PROTOCOL_CLASSES[protocol])
    if full.shape[0] == len(CLASS_NAMES):
        m = protocol_matrix(full, protocol)
    elif full.shape[0] == k:
        m = full
    else:
        raise ValueError(
            f"a {full.shape[0]}-class matrix fits neither 19 classes nor protocol {protocol}"
        )
    iou = per_class_iou(m)
    total = int(m.sum())
    out: dict[str, Any] = {
        "protocol": protocol,
        "miou": _pct_mean(iou),
        "iou": {name: _pct(v) for name, v in zip(protocol_class_names(protocol), iou, strict=True)},
        "pixel_acc": float(np.trace(m[:, :k]) / total * 100.0) if total else None,
        "num_pixels": total,
    }
    if protocol == 16:
        out["miou13"] = _pct_mean(iou, MIOU13_OF_16)
    if full.shape[0] == len(CLASS_NAMES):
        iou19 = per_class_iou(full)
        out["miou16_19conv"] = _pct_mean(iou19, PROTOCOL_CLASSES[16])
        out["miou13_19conv"] = _pct_mean(iou19, PROTOCOL_CLASSES[13])
    return out


def metric_key(class_name: str) -> str:
    """The flat metric key of a class IoU: ``iou/<name>`` with spaces as underscores."""
    return "iou/" + class_name.replace(" ", "_")


def flatten_metrics(scores: Mapping[str, Any]) -> dict[str, float]:
    """Flat ``{key: float}`` view for ``dvc metrics``: ``miou``, ``miou13``, ``iou/<class>``, ...

    Entries that are None (NaN: class absent from GT and prediction) are left out, because JSON has
    no NaN and an absent key is what ``dvc metrics diff`` shows as "no value".
    """
    flat: dict[str, float] = {}
    for key, value in scores.items():
        if key == "iou":
            flat.update({metric_key(n): float(v) for n, v in value.items() if v is not None})
        elif key not in ("protocol", "num_pixels") and isinstance(value, (int, float)):
            flat[key] = float(value)
    return flat
