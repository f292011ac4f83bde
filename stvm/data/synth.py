"""Built-in synthetic domain-shift benchmark: procedural street scenes in GTA5 / Cityscapes layouts.

Why: the real datasets cannot be downloaded here, so the pipeline needs a small benchmark with a
real, controllable domain gap to run end to end. The *source* domain imitates a game engine (flat
saturated colours, sharp edges, uniform light) and is written exactly like the GTA5 download; the
*target* domain imitates camera footage and is written exactly like the Cityscapes download.

The shift is made of named parts (``synth_style.PART_FIELDS``): global appearance, class-conditional
appearance, texture, object shape, layout and class frequencies, sensor effects; each has its own
strength, so each can be measured alone. The rooms: ``synth_style`` (materials, palettes, styles,
parts), ``synth_canvas`` (camera, canvas), ``synth_scene`` / ``synth_objects`` (what is where: the
label), ``synth_render`` (how it looks), and this module (frames, files, preview).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stvm.config import SYNTH_MIN_SIDE
from stvm.data.labels import CITYSCAPES_LABELS, CITYSCAPES_PALETTE
from stvm.data.synth_canvas import Canvas
from stvm.data.synth_render import render
from stvm.data.synth_scene import draw_scene
from stvm.data.synth_style import MAT_CLASS, DomainStyle, domain_styles
from stvm.errors import StvmError
from stvm.io import atomic_dir, atomic_path, write_json

_DOMAIN_CODE = {"source": 0, "target": 1}
_SPLIT_CODE = {"train": 0, "val": 1}


def generate_frame(seed: int, domain: str, split: str, index: int, width: int, height: int,
                   style: DomainStyle, object_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, Cityscapes-id uint8 label) pair seeded by (seed, domain, split, index).

    Layout and rendering use separate child streams, so appearance knobs never move the layout.
    """
    rng = np.random.default_rng([seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], index])
    layout_rng, render_rng = rng.spawn(2)
    pattern_rng = rng.spawn(1)[0]  # a third stream: the texture part moves nothing else
    cv = Canvas(width, height, layout_rng)
    draw_scene(cv, style, layout_rng, object_size)
    return render(cv, style, render_rng, pattern_rng), MAT_CLASS[cv.mat]


# --------------------------------------------------------------------------------------------
# Writing the two datasets
# --------------------------------------------------------------------------------------------
TRAIN_CITIES: tuple[str, ...] = ("synthtown", "pixelburg")
VAL_CITIES: tuple[str, ...] = ("renderdam",)


@dataclass(frozen=True)
class _Job:
    domain: str
    split: str
    index: int
    image: str  # paths relative to the output root
    label: str


def _jobs(n_source: int, n_train: int, n_val: int) -> list[_Job]:
    """Every frame to write, with its GTA5- or Cityscapes-style file names."""
    jobs = [_Job("source", "train", i, f"source/images/{i + 1:05d}.png",
                 f"source/labels/{i + 1:05d}.png") for i in range(n_source)]
    for split, n, cities in (("train", n_train, TRAIN_CITIES), ("val", n_val, VAL_CITIES)):
        for i in range(n):
            c = i * len(cities) // n  # contiguous blocks per city
            first = (c * n + len(cities) - 1) // len(cities)  # first i with this city
            city, k = cities[c], i - first
            stem = f"{city}/{city}_000000_{k:06d}"
            jobs.append(_Job("target", split, i,
                             f"target/leftImg8bit/{split}/{stem}_leftImg8bit.png",
                             f"target/gtFine/{split}/{stem}_gtFine_labelIds.png"))
    return jobs


def _write_job(args: tuple[str, _Job, int, int, int, DomainStyle, float]) -> np.ndarray:
    """Generate and write one frame; return its 256-bin label histogram."""
    root, job, seed, width, height, style, object_size = args
    img, lab = generate_frame(seed, job.domain, job.split, job.index, width, height, style, object_size)
    img_path, lab_path = Path(root) / job.image, Path(root) / job.label
    img_path.parent.mkdir(parents=True, exist_ok=True)
    lab_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(img_path, format="PNG")
    if job.domain == "source":  # GTA5: palettized, index = Cityscapes id
        pim = Image.frombytes("P", (width, height), lab.tobytes())
        pim.putpalette(CITYSCAPES_PALETTE)
        pim.save(lab_path, format="PNG")
    else:  # Cityscapes: 8-bit grayscale ids
        Image.fromarray(lab).save(lab_path, format="PNG")
    return np.bincount(lab.ravel(), minlength=256)


def _check_args(out: Path, counts: Sequence[int], width: int, height: int, seed: int,
                shift: float, workers: int) -> None:
    if any(not isinstance(n, int) or n < 0 for n in counts):
        raise StvmError(None, f"frame counts must be non-negative integers, got {list(counts)}")
    if width < SYNTH_MIN_SIDE or height < SYNTH_MIN_SIDE:
        raise StvmError(None, f"image size must be at least {SYNTH_MIN_SIDE}x{SYNTH_MIN_SIDE}, got {width}x{height}")
    if not isinstance(seed, int) or seed < 0:
        raise StvmError(None, f"seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(shift) or shift < 0:
        raise StvmError(None, f"shift must be a finite number >= 0, got {shift!r}")
    if workers < 1:
        raise StvmError(None, f"workers must be >= 1, got {workers}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StvmError(out, "output already exists and is not an empty directory")


def _histogram(counts: np.ndarray) -> dict[str, int]:
    return {CITYSCAPES_LABELS.get(i, (f"id{i}",))[0]: int(c) for i, c in enumerate(counts) if c}


def write_synth(out: Path, *, n_source: int, n_target_train: int, n_target_val: int, width: int,
                height: int, seed: int, shift: float = 1.0, workers: int = 1,
                source_style: DomainStyle | None = None,
                target_style: DomainStyle | None = None, parts: Mapping[str, float] | None = None,
                object_size: float = 1.0) -> dict:
    """Write the synthetic benchmark to ``out`` (source/ as GTA5, target/ as Cityscapes).

    ``target_style`` is the full-strength target (default ``TARGET_STYLE``); the target domain
    actually written moves each part of the shift ``shift * parts[part]`` of the way to it
    (``synth_style.domain_styles``); ``object_size`` scales objects in both domains. Writes atomically
    (temporary sibling directory, then rename) and refuses a non-empty ``out``. Returns the
    summary also written to ``out/synth.json``. Output does not depend on ``workers``.
    """
    out = Path(out)
    _check_args(out, (n_source, n_target_train, n_target_val), width, height, seed, shift, workers)
    if not math.isfinite(object_size) or object_size <= 0:
        raise StvmError(None, f"object_size must be a finite number > 0, got {object_size!r}")
    try:
        src, tgt = domain_styles(shift, source_style, target_style, parts)
    except ValueError as e:
        raise StvmError(None, str(e)) from None
    jobs = _jobs(n_source, n_target_train, n_target_val)
    hist = {k: np.zeros(256, np.int64) for k in ("source", "target_train", "target_val")}
    with atomic_dir(out, overwrite=out.exists()) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the dataset is meant to be shared
        args = [(str(tmp), j, seed, width, height, src if j.domain == "source" else tgt, object_size)
                for j in jobs]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                chunk = max(len(args) // (4 * workers), 1)
                results = list(pool.map(_write_job, args, chunksize=chunk))
        else:
            results = [_write_job(a) for a in args]
        for job, h in zip(jobs, results):
            hist["source" if job.domain == "source" else f"target_{job.split}"] += h
        summary = _summary(seed, width, height, shift, jobs, src, tgt, hist)
        summary["parts"] = {k: float(v) for k, v in (parts or {}).items()} or None
        summary["object_size"] = float(object_size)
        write_json(tmp / "synth.json", summary)
    return summary


def _summary(seed: int, width: int, height: int, shift: float, jobs: list[_Job],
             src: DomainStyle, tgt: DomainStyle, hist: dict[str, np.ndarray]) -> dict:
    counts = {k: sum(1 for j in jobs if (j.domain if j.domain == "source"
                                         else f"target_{j.split}") == k) for k in hist}
    summary = {
        "generator": "stvm.data.synth", "version": 2, "seed": seed, "width": width,
        "height": height, "shift": float(shift), "counts": counts,
        "layout": {"source": "gta5", "target": "cityscapes"},
        "cities": {"train": list(TRAIN_CITIES), "val": list(VAL_CITIES)},
        "style": {"source": dataclasses.asdict(src), "target": dataclasses.asdict(tgt)},
        "class_pixels": {k: _histogram(v) for k, v in hist.items()},
    }
    return json.loads(json.dumps(summary))  # exactly what synth.json holds (tuples -> lists)


# --------------------------------------------------------------------------------------------
# Preview picture
# --------------------------------------------------------------------------------------------
_COLOR_LUT = np.array(CITYSCAPES_PALETTE, np.uint8).reshape(256, 3)


def save_preview(out: Path, png: Path, n: int = 3) -> None:
    """Compose ``n`` rows of source image | source label | target image | target label into ``png``.

    Labels are shown in the official Cityscapes colours; target frames come from the train split.
    """
    out = Path(out)
    src = sorted((out / "source" / "images").glob("*.png"))[:n]
    tgt = sorted((out / "target" / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))[:n]
    if not src or not tgt:
        raise StvmError(out, "no synthetic source/target frames found (run write_synth first)")
    rows = []
    for s_img, t_img in zip(src, tgt):
        s_lab = out / "source" / "labels" / s_img.name
        t_lab = (out / "target" / "gtFine" / "train" / t_img.parent.name
                 / t_img.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
        tiles = [np.asarray(Image.open(s_img).convert("RGB")),
                 _COLOR_LUT[np.asarray(Image.open(s_lab))],
                 np.asarray(Image.open(t_img).convert("RGB")),
                 _COLOR_LUT[np.asarray(Image.open(t_lab))]]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    tile_w = grid.shape[1] // 4
    header = np.full((16, grid.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(("source (GTA5-like) image", "source label",
                              "target (Cityscapes-like) image", "target label")):
        cv2.putText(header, text, (i * tile_w + 4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    with atomic_path(png) as tmp:
        Image.fromarray(np.concatenate([header, grid], axis=0)).save(tmp, format="PNG")
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
