"""Converting raw frames to prepared PNGs, one task per frame, in a pool of worker processes.

One task reads a raw image (and label), records the sha256 of every byte it read, remaps the label
to trainIds, resizes both and writes the PNGs; the pool (``spawn``, so a worker never inherits a
parent's state) runs them and turns a worker's failure into the ``StvmError`` naming the file.
``stvm.data.prepare`` plans the tasks and writes the manifest around them. A frame of another aspect
ratio than the output size is stretched, centre-cropped or padded (``aspect``, ``fit_aspect``) at its
own resolution, before the resize, so its label (full resolution or resized) keeps the same geometry.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stvm.data.images import IMAGENET_MEAN, read_bytes, write_png
from stvm.data.labels import CLASS_NAMES, ID_TO_TRAINID, IGNORE
from stvm.data.readers import Sample, decode_image, decode_label
from stvm.errors import StvmError
from stvm.io import real_path
from stvm.progress import ProgressBar


@dataclass(frozen=True)
class Task:
    """Everything one worker needs to convert one raw frame (picklable)."""

    split: str
    sample: Sample
    root: Path
    out: Path
    encoding: str
    size: tuple[int, int]
    resize_label: bool
    mismatch: str
    label_root: Path  # label paths in the manifest are relative to it, after label_prefix
    label_prefix: str = ""
    aspect: str = "stretch"  # a frame of another aspect ratio: stretch, crop or pad (ASPECTS)


ASPECTS = ("stretch", "crop", "pad")
ASPECT_TOLERANCE = 0.01  # a resize that scales x and y within 1% of each other keeps the aspect (rounding)
PAD_RGB = tuple(round(255 * float(v)) for v in IMAGENET_MEAN)  # normalises to zero: padding adds no signal


def other_aspect(width: int, height: int, size: tuple[int, int]) -> bool:
    """Whether resizing a ``width`` x ``height`` frame to ``size`` would change its aspect ratio."""
    return abs((size[0] / width) / (size[1] / height) - 1.0) > ASPECT_TOLERANCE


def fit_aspect(arr: np.ndarray, size: tuple[int, int], mode: str, fill: Any) -> np.ndarray:
    """``arr`` (HxW or HxWxC) centre-cropped (``crop``) or padded with ``fill`` (``pad``) at its own
    resolution to the aspect ratio of ``size`` = (W, H); unchanged for ``stretch`` or a fitting frame."""
    h, w = arr.shape[:2]
    if mode == "stretch" or not other_aspect(w, h, size):
        return arr
    ratio, wide = size[0] / size[1], w / h > size[0] / size[1]
    if mode == "crop":
        nw, nh = (max(1, round(h * ratio)), h) if wide else (w, max(1, round(w / ratio)))
        x0, y0 = (w - nw) // 2, (h - nh) // 2
        return arr[y0: y0 + nh, x0: x0 + nw]
    nw, nh = (w, round(w / ratio)) if wide else (round(h * ratio), h)
    out = np.empty((nh, nw, *arr.shape[2:]), arr.dtype)
    out[...] = fill
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    out[y0: y0 + h, x0: x0 + w] = arr
    return out


def _resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height): INTER_AREA when shrinking both sides, bilinear otherwise."""
    height, width = img.shape[:2]
    if (width, height) == tuple(size):
        return img
    shrinking = size[0] <= width and size[1] <= height
    return cv2.resize(
        img, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def _resize_label(lab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (pixel-centre aligned, like PIL NEAREST) to (width, height)."""
    if (lab.shape[1], lab.shape[0]) == tuple(size):
        return lab
    return cv2.resize(lab, tuple(size), interpolation=cv2.INTER_NEAREST_EXACT)


def _load(path: Path, root: Path, sources: dict[str, str], prefix: str = "") -> bytes:
    """Read a raw file once, recording its sha256 under its path relative to the dataset root."""
    data = read_bytes(path)
    try:
        rel = path.relative_to(root)
    except ValueError:  # the same folder spelt differently (relative vs absolute, a symlink)
        rel = real_path(path).relative_to(real_path(root))
    sources[prefix + rel.as_posix()] = hashlib.sha256(data).hexdigest()
    return data


def _convert(task: Task) -> dict[str, Any]:
    """Convert one raw frame; return what the manifest needs (never the pixels)."""
    s, sources = task.sample, {}
    image = decode_image(_load(s.image, task.root, sources), s.image)
    h, w = image.shape[:2]
    result: dict[str, Any] = {
        "split": task.split,
        "stem": s.stem,
        "sources": sources,
        "raw_size": f"{w}x{h}",
        "hist": None,
        "resized": None,
        "skipped": None,
        "other_aspect": other_aspect(w, h, task.size),
    }
    label = None
    if s.label is not None:
        data = _load(s.label, task.label_root, sources, task.label_prefix)
        raw = decode_label(data, s.label, task.encoding)
        if raw.shape != (h, w):
            problem = f"label size {raw.shape[1]}x{raw.shape[0]} differs from image size {w}x{h}"
            if task.mismatch == "error":
                raise StvmError(s.label, problem)
            if task.mismatch == "skip":
                result["skipped"] = problem
                return result
            raw = _resize_label(raw, (w, h))
            result["resized"] = problem
        label = fit_aspect(ID_TO_TRAINID[task.encoding][raw], task.size, task.aspect, IGNORE)
        if task.resize_label:
            label = _resize_label(label, task.size)
        counts = np.bincount(label.ravel(), minlength=256)
        result["hist"] = [int(c) for c in counts[: len(CLASS_NAMES)]] + [int(counts[IGNORE])]
    split_dir = task.out / task.split
    image = fit_aspect(image, task.size, task.aspect, PAD_RGB)
    write_png(split_dir / "images" / f"{s.stem}.png", _resize_image(image, task.size))
    if label is not None:
        write_png(split_dir / "labels" / f"{s.stem}.png", label)
    return result


def _convert_safe(task: Task) -> dict[str, Any]:
    """Worker entry point: a StvmError returns as data (it does not pickle), re-raised later."""
    try:
        return _convert(task)
    except StvmError as err:
        return {"error": (err.where, err.problem)}


def _init_worker() -> None:
    cv2.setNumThreads(1)  # the pool already uses every requested core


def _unwrap(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        raise StvmError(*result["error"])
    return result


def run_tasks(tasks: list[Task], workers: int, bar: ProgressBar) -> list[dict[str, Any]]:
    """Convert every task in-process (workers <= 1) or in a spawn pool; stop at the first error."""
    results = []
    if workers <= 1:
        for task in tasks:
            results.append(_unwrap(_convert_safe(task)))
            bar.update()
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker
    ) as pool:
        futures = [pool.submit(_convert_safe, task) for task in tasks]
        try:
            for future in as_completed(futures):
                results.append(_unwrap(future.result()))
                bar.update()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results
