"""Single- and multi-scale inference and evaluation of a model on a prepared image/label folder.

Multi-scale testing follows formats.md §6 (mmseg ``aug_test``, IAST, CRST): for every scale the
input is resized bilinearly, the model's logits are turned into softmax probabilities, flipped back
when the input was flipped, resized to the scoring size, and the probabilities are averaged over
scales x flips. ``scales=[1.0], flip=False`` is plain single-scale inference, bit for bit.

Scoring resolution: predictions are upsampled to each label's own resolution, so full-resolution
labels give the AdaptSegNet/ADVENT/DAFormer protocol (formats.md §5.2) and labels resized at prepare
time give the downscaled (DACS/URMA) one; the label folder decides, and the caller records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stvm.data.images import normalize, read_rgb, read_trainid_png, write_png
from stvm.data.labels import CLASS_NAMES, PROTOCOL_CLASSES, colorize
from stvm.data.pairs import match_stems
from stvm.errors import StvmError
from stvm.evaluate.metrics import ConfusionMatrix, scores_from_confusion
from stvm.progress import ProgressBar

def predict_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    out_size: tuple[int, int],
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Class probabilities ``(B, C, *out_size)`` averaged over ``scales`` x (flip or not).

    ``image`` is a normalised ``(B, 3, H, W)`` batch; ``model(x)`` must return logits
    ``(B, C, h, w)`` (any ``h, w``: they are resized). Gradient mode is left to the caller. Despite
    the name (kept for callers), the result is softmax probabilities, the quantity that is averaged.
    """
    return torch.stack(predict_probs(model, image, [tuple(out_size)] * image.shape[0], scales, flip))


def predict_probs(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    out_sizes: Sequence[tuple[int, int]],
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> list[torch.Tensor]:
    """Per image ``i`` of the batch, probabilities ``(C, *out_sizes[i])`` averaged over scales x flips.

    One forward per scale: with ``flip`` the mirrored copies go through the model in the same batch
    as the originals (``2B`` images). Each probability map is resized to its image's scoring size
    before averaging, in the order scale by scale, original before mirrored.
    """
    if not scales:
        raise ValueError("scales must not be empty")
    batch, (height, width) = image.shape[0], image.shape[-2:]
    totals: list[torch.Tensor | None] = [None] * batch
    count = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = image if size == (height, width) else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        prob = model(torch.cat([x, x.flip(-1)]) if flip else x).softmax(dim=1)
        for part in (prob[:batch], prob[batch:].flip(-1)) if flip else (prob,):
            for i, p in enumerate(_resized(part, out_sizes)):
                totals[i] = p if totals[i] is None else totals[i] + p
            count += 1
    return [t if count == 1 else t / count for t in totals]


def _resized(prob: torch.Tensor, out_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``prob[i]`` bilinearly resized to ``out_sizes[i]`` (one call for the batch when they agree)."""
    sizes = [tuple(s) for s in out_sizes]
    if len(set(sizes)) == 1:
        if tuple(prob.shape[-2:]) != sizes[0]:
            prob = F.interpolate(prob, size=sizes[0], mode="bilinear", align_corners=False)
        return list(prob.unbind(0))
    return [p if tuple(p.shape[-2:]) == s else F.interpolate(p[None], size=s, mode="bilinear", align_corners=False)[0]
            for p, s in zip(prob.unbind(0), sizes, strict=True)]


def _read_image(path: Path, input_size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 image resized (bilinear) to ``input_size`` = (W, H) unless already that size."""
    img = read_rgb(path)  # pixel limit checked, errors name the file
    if (img.shape[1], img.shape[0]) != tuple(input_size):
        img = cv2.resize(img, tuple(input_size), interpolation=cv2.INTER_LINEAR)
    return img


def evaluate_folder(
    model: torch.nn.Module,
    images_dir: Path,
    labels_dir: Path,
    *,
    protocol: int,
    input_size: tuple[int, int],
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: torch.device | str = "cpu",
    pred_dir: Path | None = None,
    color_dir: Path | None = None,
    show_progress: bool = True,
    batch_size: int = 1,
) -> tuple[dict[str, Any], np.ndarray]:
    """Score ``model`` on ``images_dir/<stem>.png`` against ``labels_dir/<stem>.png`` (trainIds).

    Images are resized to ``input_size`` (W, H); probabilities are upsampled to each label's size.
    The model must output ``len(PROTOCOL_CLASSES[protocol])`` channels in protocol-index order and
    already be on ``device``; it is put in eval mode and its previous mode is restored afterwards.
    Predictions are converted to trainIds and counted in one 19-class confusion matrix on the
    device. Optionally writes trainId PNGs to ``pred_dir`` and Cityscapes-coloured PNGs to
    ``color_dir`` (each file atomically). Images go through the model ``batch_size`` at a time (the
    numbers do not depend on it beyond float rounding). Returns ``(scores_from_confusion(...), 19 x 20
    matrix)``.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    pairs = match_stems(images_dir, labels_dir, first="image", second="label")
    device = torch.device(device)
    to_trainid = torch.tensor(PROTOCOL_CLASSES[protocol], dtype=torch.int64, device=device)
    cm = ConfusionMatrix(len(CLASS_NAMES), device)
    was_training = model.training
    model.eval()
    bar = ProgressBar(len(pairs), "evaluate", show_progress, unit="img")
    try:
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                labels = [read_trainid_png(label_path, "label") for _, _, label_path in chunk]
                x = torch.stack([normalize(_read_image(image_path, input_size)) for _, image_path, _ in chunk])
                probs = predict_probs(model, x.to(device), [lab.shape for lab in labels], scales, flip)
                for (stem, _, _), label, prob in zip(chunk, labels, probs, strict=True):
                    _count(prob, label, to_trainid, protocol, cm)
                    if pred_dir is not None or color_dir is not None:
                        _write_prediction(stem, to_trainid[prob.argmax(dim=0)], pred_dir, color_dir)
                    bar.update()
    finally:
        bar.close()
        model.train(was_training)
    matrix = cm.matrix.cpu().numpy()
    return scores_from_confusion(matrix, protocol), matrix


def _count(prob: torch.Tensor, label: np.ndarray, to_trainid: torch.Tensor, protocol: int, cm: ConfusionMatrix) -> None:
    """Add one image's prediction (argmax of ``prob``, as trainIds) to the confusion matrix."""
    if prob.shape[0] != len(to_trainid):
        raise StvmError(None, f"model outputs {prob.shape[0]} classes but protocol {protocol} needs {len(to_trainid)}")
    cm.update(to_trainid[prob.argmax(dim=0)], torch.from_numpy(label).to(prob.device))


def _write_prediction(stem: str, pred: torch.Tensor, pred_dir: Path | None, color_dir: Path | None) -> None:
    """trainId PNG to ``pred_dir`` and Cityscapes-coloured PNG to ``color_dir`` (those given)."""
    pred_np = pred.to(torch.uint8).cpu().numpy()
    if pred_dir is not None:
        write_png(Path(pred_dir) / f"{stem}.png", pred_np)
    if color_dir is not None:
        write_png(Path(color_dir) / f"{stem}.png", colorize(pred_np, 19))
