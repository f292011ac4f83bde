"""Score a folder of prediction PNGs against ground truth (``stvm score``), with strict checks.

File matching (``stvm.data.pairs``): a prediction ``<stem>.png`` is matched to the ground truth
``<stem>.png`` or ``<stem>_gtFine_labelTrainIds.png``; folders are read flat; every ground-truth file
must have a prediction and every prediction a ground truth (a leftover is an error naming it).

Both sides must be single-channel PNGs holding trainIds 0..18 or 255 (ignore), of equal size.
The score itself comes from ``stvm.evaluate.metrics`` (the one implementation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvm.data.labels import CLASS_NAMES
from stvm.data.images import read_trainid_png
from stvm.data.pairs import match_stems
from stvm.errors import StvmError
from stvm.evaluate.metrics import ConfusionMatrix, scores_from_confusion

def confusion_from_folders(pred_dir: Path, gt_dir: Path) -> np.ndarray:
    """The 19 x 20 trainId confusion matrix of a prediction folder against its ground truth."""
    cm = ConfusionMatrix(len(CLASS_NAMES))
    for _, pred_path, gt_path in match_stems(
        pred_dir, gt_dir, first="prediction", second="ground truth", gt_names=True
    ):
        pred = read_trainid_png(pred_path, "prediction")
        gt = read_trainid_png(gt_path, "ground truth")
        if pred.shape != gt.shape:
            raise StvmError(
                pred_path,
                f"prediction size {pred.shape[1]}x{pred.shape[0]} differs from "
                f"ground truth {gt_path} size {gt.shape[1]}x{gt.shape[0]}",
            )
        cm.update(torch.from_numpy(pred), torch.from_numpy(gt))
    return cm.matrix.numpy()


def score_folders(pred_dir: Path, gt_dir: Path, protocol: int) -> dict[str, Any]:
    """Scores (``scores_from_confusion``) of trainId prediction PNGs against trainId GT PNGs."""
    return scores_from_confusion(confusion_from_folders(Path(pred_dir), Path(gt_dir)), protocol)
