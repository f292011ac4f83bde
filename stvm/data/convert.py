"""Converting raw frames to prepared PNGs, one task per frame, in a pool of worker processes.

One task reads a raw image (and label), records the sha256 of every byte it read, remaps the label
to trainIds, resizes both and writes the PNGs; the pool (``spawn``, so a worker never inherits a
parent's state) runs them and turns a worker's failure into the ``StvmError`` naming the file.
``stvm.data.prepare`` plans the tasks and writes the manifest around them.
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

from stvm.data.images import read_bytes, write_png
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
        label = ID_TO_TRAINID[task.encoding][raw]
        if task.resize_label:
            label = _resize_label(label, task.size)
        counts = np.bincount(label.ravel(), minlength=256)
        result["hist"] = [int(c) for c in counts[: len(CLASS_NAMES)]] + [int(counts[IGNORE])]
    split_dir = task.out / task.split
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
