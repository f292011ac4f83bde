"""Score a folder of prediction PNGs against ground truth (``stvm score``), with strict checks.

File matching: a prediction ``<stem>.png`` is matched to the ground truth ``<stem>.png`` or, for
Cityscapes-style folders, ``<stem>_gtFine_labelTrainIds.png`` (both present: an error). The other
Cityscapes companions in a ground-truth folder (``*_gtFine_labelIds``, ``*_gtFine_instanceIds``,
``*_gtFine_color``) are skipped: they are not trainIds. Folders are read flat (no subfolders).
Every ground-truth file must have a prediction and every prediction a ground truth, because a
silently skipped image changes the score; either kind of leftover is an error naming the first one.

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
from stvm.errors import StvmError
from stvm.evaluate.metrics import ConfusionMatrix, scores_from_confusion

GT_SUFFIX = "_gtFine_labelTrainIds"
_GT_COMPANIONS = ("_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color")


def _png_index(folder: Path, what: str, gt_names: bool) -> dict[str, Path]:
    """Map stem -> path of the PNGs in ``folder`` (GT naming rules when ``gt_names``)."""
    if not folder.is_dir():
        raise StvmError(folder, f"{what} folder not found")
    index: dict[str, Path] = {}
    for path in sorted(folder.glob("*.png")):
        stem = path.stem
        if gt_names and stem.endswith(_GT_COMPANIONS):
            continue
        if gt_names and stem.endswith(GT_SUFFIX):
            stem = stem[: -len(GT_SUFFIX)]
        if stem in index:
            raise StvmError(path, f"{what} stem '{stem}' also used by {index[stem].name}")
        index[stem] = path
    if not index:
        raise StvmError(folder, f"no {what} PNG files")
    return index


def _leftover_error(
    index: dict[str, Path], stems: list[str], what: str, other: str, other_dir: Path
) -> StvmError:
    more = f" (and {len(stems) - 1} more)" if len(stems) > 1 else ""
    return StvmError(
        index[stems[0]], f"no {other} for this {what} (expected {other_dir / stems[0]}.png){more}"
    )


def match_stems(
    first_dir: Path, second_dir: Path, *, first: str, second: str, gt_names: bool = False
) -> list[tuple[str, Path, Path]]:
    """Pair ``first_dir/<stem>.png`` with ``second_dir``'s file of the same stem, one to one.

    ``first``/``second`` name the two kinds in error messages ("prediction", "ground truth").
    ``gt_names`` applies the ground-truth naming rules of the module docstring to ``second_dir``.
    Returns ``(stem, first_path, second_path)`` sorted by stem.
    """
    a = _png_index(Path(first_dir), first, gt_names=False)
    b = _png_index(Path(second_dir), second, gt_names=gt_names)
    if missing := sorted(a.keys() - b.keys()):
        raise _leftover_error(a, missing, first, second, Path(second_dir))
    if extra := sorted(b.keys() - a.keys()):
        raise _leftover_error(b, extra, second, first, Path(first_dir))
    return [(stem, a[stem], b[stem]) for stem in sorted(a)]


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
