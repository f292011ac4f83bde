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

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stvm.data.datasets import read_rgb
from stvm.data.labels import CLASS_NAMES, PROTOCOL_CLASSES, colorize
from stvm.errors import StvmError
from stvm.evaluate.metrics import ConfusionMatrix, scores_from_confusion
from stvm.evaluate.score import match_stems, read_trainid_png
from stvm.io import atomic_path

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


def normalize(img_uint8_hwc: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 normalised with the ImageNet mean/std.

    Same arithmetic as the training input path (``x/255``, minus mean, divided by std).
    """
    img = np.asarray(img_uint8_hwc)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
    return (x - IMAGENET_MEAN.view(3, 1, 1)) / IMAGENET_STD.view(3, 1, 1)


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
    if not scales:
        raise ValueError("scales must not be empty")
    height, width = image.shape[-2:]
    total: torch.Tensor | None = None
    count = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = (
            image
            if size == (height, width)
            else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        )
        for flipped in (False, True) if flip else (False,):
            prob = model(x.flip(-1) if flipped else x).softmax(dim=1)
            if flipped:
                prob = prob.flip(-1)
            if tuple(prob.shape[-2:]) != tuple(out_size):
                prob = F.interpolate(
                    prob, size=tuple(out_size), mode="bilinear", align_corners=False
                )
            total = prob if total is None else total + prob
            count += 1
    assert total is not None
    return total if count == 1 else total / count


def _read_image(path: Path, input_size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 image resized (bilinear) to ``input_size`` = (W, H) unless already that size."""
    img = read_rgb(path)  # pixel limit checked, errors name the file
    if (img.shape[1], img.shape[0]) != tuple(input_size):
        img = cv2.resize(img, tuple(input_size), interpolation=cv2.INTER_LINEAR)
    return img


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 PNG atomically (grey for HxW, RGB for HxWx3)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise StvmError(path, "PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _progress(done: int, total: int, enabled: bool) -> None:
    if enabled and (done == total or done % max(1, total // 20) == 0):
        print(f"evaluate: {done}/{total} images", file=sys.stderr, flush=True)


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
) -> tuple[dict[str, Any], np.ndarray]:
    """Score ``model`` on ``images_dir/<stem>.png`` against ``labels_dir/<stem>.png`` (trainIds).

    Images are resized to ``input_size`` (W, H); probabilities are upsampled to each label's size.
    The model must output ``len(PROTOCOL_CLASSES[protocol])`` channels in protocol-index order and
    already be on ``device``; it is put in eval mode and its previous mode is restored afterwards.
    Predictions are converted to trainIds and counted in one 19-class confusion matrix on the
    device. Optionally writes trainId PNGs to ``pred_dir`` and Cityscapes-coloured PNGs to
    ``color_dir`` (each file atomically). Returns ``(scores_from_confusion(...), 19 x 20 matrix)``.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    pairs = match_stems(images_dir, labels_dir, first="image", second="label")
    device = torch.device(device)
    to_trainid = torch.tensor(PROTOCOL_CLASSES[protocol], dtype=torch.int64, device=device)
    cm = ConfusionMatrix(len(CLASS_NAMES), device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i, (stem, image_path, label_path) in enumerate(pairs, start=1):
                label = read_trainid_png(label_path, "label")
                x = normalize(_read_image(image_path, input_size))[None].to(device)
                prob = predict_logits(model, x, label.shape, scales, flip)
                if prob.shape[1] != len(to_trainid):
                    raise StvmError(
                        None,
                        f"model outputs {prob.shape[1]} classes but protocol {protocol} "
                        f"needs {len(to_trainid)}",
                    )
                pred = to_trainid[prob[0].argmax(dim=0)]
                cm.update(pred, torch.from_numpy(label).to(device))
                if pred_dir is not None or color_dir is not None:
                    pred_np = pred.to(torch.uint8).cpu().numpy()
                    if pred_dir is not None:
                        _write_png(Path(pred_dir) / f"{stem}.png", pred_np)
                    if color_dir is not None:
                        _write_png(Path(color_dir) / f"{stem}.png", colorize(pred_np, 19))
                _progress(i, len(pairs), show_progress)
    finally:
        model.train(was_training)
    matrix = cm.matrix.cpu().numpy()
    return scores_from_confusion(matrix, protocol), matrix
