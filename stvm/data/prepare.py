"""Prepare stage: raw dataset -> resized RGB PNGs + uint8 trainId label PNGs + manifest.json.

Output (the names are fixed; DVC declares the sub-folders as separate outputs)::

    out/train/images/<stem>.png   RGB resized to ``size`` (INTER_AREA when shrinking, else bilinear)
    out/train/labels/<stem>.png   trainIds, nearest, same size (only for labelled train splits)
    out/val/images/<stem>.png     RGB resized to ``size``
    out/val/labels/<stem>.png     trainIds, raw resolution ("full") or nearest to ``size`` ("train")
    out/manifest.json

Everything is written into a temporary folder next to ``out`` and renamed at the end, so bad input
(every case is a ``StvmError`` naming the file) never leaves anything at ``out``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stvm.data.convert import ASPECTS, Task, run_tasks
from stvm.data.labels import CLASS_NAMES, ID_TO_TRAINID
from stvm.data.readers import (
    NTHU_CITIES,
    Sample,
    cityscapes_samples,
    folder_samples,
    gta5_samples,
    nthu_samples,
    synthia_samples,
)
from stvm.errors import StvmError
from stvm.io import atomic_dir, real_path, refuse_foreign, refuse_overlap, write_json
from stvm.limits import MAX_PIXELS
from stvm.progress import ProgressBar

DATASETS = ("gta5", "synthia", "cityscapes", "nthu", "folder")
FOLDER_LABEL_ENCODINGS = ("cityscapes", "trainids")
EVAL_LABEL_SIZES = ("full", "train")
MISMATCH_POLICIES = ("resize", "skip", "error")
MAX_SIDE = int(MAX_PIXELS**0.5)
OWN = ("manifest.json", *(f"{split}/{sub}/*.png" for split in ("train", "val") for sub in ("images", "labels")))


def _check_args(
    dataset: str,
    city: str | None,
    size: tuple[int, int],
    eval_label_size: str,
    holdout: int,
    mismatch: str,
    aspect: str = "stretch",
) -> str | None:
    """Validate the parameters; return the canonical NTHU city name (None for other datasets)."""
    if dataset not in DATASETS:
        raise StvmError(None, f"unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    ints = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size
        )
    )
    if not ints:
        raise StvmError(None, f"size must be (width, height) with integers in [1, {MAX_SIDE}], got {size!r}")
    if eval_label_size not in EVAL_LABEL_SIZES:
        raise StvmError(None, f"eval_label_size must be 'full' or 'train', got {eval_label_size!r}")
    if mismatch not in MISMATCH_POLICIES:
        raise StvmError(None, f"mismatch must be one of {', '.join(MISMATCH_POLICIES)}, got {mismatch!r}")
    if aspect not in ASPECTS:
        raise StvmError(None, f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
    if holdout < 0 or (holdout and dataset not in ("gta5", "synthia")):
        raise StvmError(
            None,
            f"holdout must be >= 0 and only applies to gta5/synthia (got {holdout} for {dataset})",
        )
    if dataset != "nthu":
        if city is not None:
            raise StvmError(None, f"city only applies to the nthu dataset (got {city!r} for {dataset})")
        return None
    canonical = {c.lower(): c for c in NTHU_CITIES}.get(str(city).lower())
    if canonical is None:
        raise StvmError(None, f"nthu needs city = one of {', '.join(NTHU_CITIES)} (got {city!r})")
    return canonical


def _check_folder_args(dataset: str, labels: Path | None, label_encoding: str) -> None:
    """``labels`` applies to the folder dataset only; its encoding must be a known one."""
    if labels is not None and dataset != "folder":
        raise StvmError(None, f"labels only apply to the folder dataset (got {labels} for {dataset})")
    if dataset == "folder" and label_encoding not in FOLDER_LABEL_ENCODINGS:
        raise StvmError(
            None,
            f"label encoding must be one of {', '.join(FOLDER_LABEL_ENCODINGS)}, got {label_encoding!r}",
        )


def _list_splits(
    dataset: str, root: Path, city: str | None, holdout: int, labels: Path | None = None
) -> dict[str, list[Sample]]:
    """Raw samples per output split (train/val) following the dataset's split rules."""
    if dataset == "folder":
        return folder_samples(root, labels)
    if dataset == "cityscapes":
        return {"train": cityscapes_samples(root, "train"), "val": cityscapes_samples(root, "val")}
    if dataset == "nthu":
        assert city is not None
        return {"train": nthu_samples(root, city, "train"), "val": nthu_samples(root, city, "test")}
    samples = gta5_samples(root) if dataset == "gta5" else synthia_samples(root)
    if holdout >= len(samples):
        raise StvmError(
            root, f"holdout {holdout} leaves no training pairs ({len(samples)} pairs found)"
        )
    if not holdout:
        return {"train": samples}
    return {"train": samples[:-holdout], "val": samples[-holdout:]}


def _check_out(out: Path, overwrite: bool, inputs: list[Path | None]) -> None:
    """``out`` may be absent or an empty directory tree; a non-empty one needs ``overwrite``, and
    then holds only prepare's own files (``OWN``). It never overlaps an input."""
    refuse_overlap(out, inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise StvmError(out, "output exists and is not a directory")
    if (
        out.is_dir()
        and not overwrite
        and any(p.is_symlink() or not p.is_dir() for p in out.rglob("*"))
    ):
        raise StvmError(out, "output folder is not empty (remove it or pass --overwrite)")
    refuse_foreign(out, OWN, "--overwrite replaces only what prepare wrote, and would delete them: move them "
                             "or choose another --out")


def _split_summary(
    split: str, results: list[dict[str, Any]], labelled: bool, label_size: str | None, root: Path
) -> dict[str, Any]:
    """Counts, class histogram (of the written labels) and mismatch-policy records of one split."""
    results = sorted(results, key=lambda r: r["stem"])
    kept = [r for r in results if r["skipped"] is None]
    if not kept:
        raise StvmError(root, f"split {split}: every pair was skipped (label/image size mismatch)")
    sizes: dict[str, int] = {}
    for r in kept:
        sizes[r["raw_size"]] = sizes.get(r["raw_size"], 0) + 1
    summary: dict[str, Any] = {
        "count": len(kept),
        "labelled": labelled,
        "label_size": label_size,
        "raw_image_sizes": sizes,
        "histogram": None,
        "ignore_pixels": None,
    }
    if labelled:
        total = np.sum([r["hist"] for r in kept], axis=0, dtype=np.int64)
        summary["histogram"] = {name: int(total[i]) for i, name in enumerate(CLASS_NAMES)}
        summary["ignore_pixels"] = int(total[-1])
    resized = [{"stem": r["stem"], "reason": r["resized"]} for r in kept if r["resized"]]
    skipped = [{"stem": r["stem"], "reason": r["skipped"]} for r in results if r["skipped"]]
    summary["resized_labels"] = {"count": len(resized), "items": resized}
    summary["skipped"] = {"count": len(skipped), "items": skipped}
    summary["other_aspect"] = sum(1 for r in kept if r["other_aspect"])  # stretched, cropped or padded: settings
    return summary


def _missing_dirs(path: Path) -> list[Path]:
    """Ancestors of (and including) ``path`` that do not exist yet, deepest first."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    return missing


def _label_root(root: Path, labels: str | None) -> tuple[Path, str]:
    """Where label paths in the manifest are taken relative to: the dataset root, or (a folder
    dataset's label folder outside it) the label folder itself, keys prefixed ``:labels/``."""
    if labels is None or real_path(labels).is_relative_to(real_path(root)):
        return root, ""
    return Path(labels), ":labels/"


def _prepare_into(
    tmp: Path,
    dataset: str,
    root: Path,
    splits: dict[str, list[Sample]],
    settings: dict[str, Any],
    workers: int,
    show_progress: bool,
) -> dict[str, Any]:
    """Convert every split into ``tmp`` and write ``tmp/manifest.json``; return the manifest."""
    size, train_labels = tuple(settings["size"]), settings["eval_label_size"] == "train"
    encoding = settings.get("label_encoding") or dataset
    label_root, label_prefix = _label_root(root, settings.get("labels"))
    tasks = []
    for split, samples in splits.items():
        labelled = samples[0].label is not None
        for sub in ("images", "labels") if labelled else ("images",):
            (tmp / split / sub).mkdir(parents=True)
        resize_label = split == "train" or train_labels
        tasks += [
            Task(
                split, s, root, tmp, encoding, size, resize_label, settings["mismatch"],
                label_root, label_prefix, settings["aspect"],
            )
            for s in samples
        ]
    # The four output folders always exist (possibly empty): DVC and Snakemake declare a fixed set
    # of outputs per prepare stage, whatever the dataset (e.g. NTHU has no train labels).
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            (tmp / split / sub).mkdir(parents=True, exist_ok=True)
    with ProgressBar(len(tasks), f"prepare {dataset}", enabled=show_progress) as bar:
        results = run_tasks(tasks, workers, bar)
    manifest = {
        "dataset": dataset,
        "root": str(root),
        **settings,
        "encoding": encoding,
        "remap": [int(v) for v in ID_TO_TRAINID[encoding]],
        "class_names": list(CLASS_NAMES),
        "splits": {},
    }
    for split, samples in splits.items():
        labelled = samples[0].label is not None
        label_size = (
            None if not labelled else ("train" if split == "train" or train_labels else "full")
        )
        manifest["splits"][split] = _split_summary(
            split, [r for r in results if r["split"] == split], labelled, label_size, root
        )
    sources = dict(sorted((k, v) for r in results for k, v in r["sources"].items()))
    manifest["sources"] = sources
    manifest["sources_sha256"] = hashlib.sha256(
        "".join(f"{k}\t{v}\n" for k, v in sources.items()).encode()
    ).hexdigest()
    write_json(tmp / "manifest.json", manifest)
    return manifest


def prepare_dataset(
    dataset: str,
    root: Path,
    out: Path,
    *,
    size: tuple[int, int],
    eval_label_size: str = "full",
    holdout: int = 0,
    city: str | None = None,
    mismatch: str = "resize",
    aspect: str = "stretch",
    labels: Path | None = None,
    label_encoding: str = "cityscapes",
    workers: int = 2,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Convert a raw dataset at ``root`` into the prepared layout at ``out``; return the manifest.

    ``size`` is (width, height). ``dataset`` is gta5, synthia, cityscapes or nthu (nthu needs
    ``city``; folder takes every PNG/JPEG under ``root``, and optional ``labels`` in
    ``label_encoding``, see ``readers.folder_samples``). ``holdout`` moves the last N sorted gta5/synthia stems to ``val``. ``mismatch``
    decides what an image/label size mismatch does: resize the label (nearest; real GTA5 has a few
    1914x1046 frames), skip the pair, or error. ``aspect`` decides what a frame of another aspect ratio
    than ``size`` does: stretch, centre-crop or pad (``convert.fit_aspect``; the manifest counts them per
    split, ``other_aspect``). Any bad input raises ``StvmError`` and writes
    nothing at ``out`` (an existing empty directory tree is accepted and left as it was).
    """
    city = _check_args(dataset, city, size, eval_label_size, holdout, mismatch, aspect)
    _check_folder_args(dataset, labels, label_encoding)
    root, out = Path(root), Path(out)
    labels = None if labels is None else Path(labels)
    _check_out(out, overwrite, [root, labels])
    splits = _list_splits(dataset, root, city, holdout, labels)
    settings = {
        "city": city,
        "size": [int(size[0]), int(size[1])],
        "eval_label_size": eval_label_size,
        "holdout": holdout,
        "mismatch": mismatch,
        "aspect": aspect,
    }
    if dataset == "folder":
        settings |= {"labels": None if labels is None else str(labels), "label_encoding": label_encoding}
    created = _missing_dirs(out.parent)
    try:
        with atomic_dir(out, overwrite=True) as tmp:
            return _prepare_into(tmp, dataset, root, splits, settings, workers, show_progress)
    except BaseException:
        for d in created:  # remove only the (still empty) parents this call created
            try:
                d.rmdir()
            except OSError:
                break
        raise
