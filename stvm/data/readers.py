"""List and decode the raw datasets as they are distributed (GTA5, SYNTHIA, Cityscapes, NTHU).

Every problem with the raw files (missing folder, empty split, an image without its label, a
corrupt or wrongly encoded file, an unknown label id) is a ``StvmError`` naming the file, so the
prepare stage fails with one readable line instead of writing wrong labels. Layouts and encodings:
``shared/research/formats.md`` sections 1-4.

Why one file over 300 lines: the five layouts (GTA5, SYNTHIA, Cityscapes, NTHU, a plain folder) share
the pairing and decoding helpers; each layout is one short function.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stvm.limits import check_pixels, check_png  # isort: skip  (sets the decoders' pixel limits before cv2 loads)

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from stvm.data.images import read_bytes
from stvm.data.labels import IGNORE, VALID_ID_MAX
from stvm.errors import StvmError
from stvm.io import real_path

NTHU_CITIES = ("Rome", "Rio", "Tokyo", "Taipei")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
NTHU_LABEL_SUFFIX = "_eval.png"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    """One raw frame: output stem, image file and label file (None for unlabeled splits)."""

    stem: str
    image: Path
    label: Path | None


def _require_dir(path: Path, what: str, layout: str = "") -> Path:
    if not path.is_dir():
        raise StvmError(
            path, f"{what} not found" + (f" (expected layout {layout})" if layout else "")
        )
    return path


def _utf8(path: Path, name: str) -> Path:
    """``path`` when ``name`` (its name, or its path below the dataset root) is valid UTF-8: the
    manifest and every output name are UTF-8, so another name is refused here, naming the file."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise StvmError(shown, "file name is not valid UTF-8 (rename it)") from None
    return path


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    """``{name without suffix: path}`` of non-hidden files in ``folder`` ending in ``suffix``."""
    return {
        p.name[: -len(suffix)]: _utf8(p, p.name)
        for p in folder.iterdir()
        if p.name.endswith(suffix) and not p.name.startswith(".") and p.is_file()
    }


def _pair(
    images: dict[str, Path],
    labels: dict[str, Path],
    image_dir: Path,
    expect_label: Callable[[str], Path],
) -> list[Sample]:
    """Join images and labels by stem; the first unmatched file (sorted by stem) is an error."""
    if not images:
        raise StvmError(image_dir, "no images found (empty split)")
    unmatched = sorted(set(images) ^ set(labels))
    if unmatched:
        stem = unmatched[0]
        counts = f"{len(images)} images, {len(labels)} labels"
        if stem in images:
            raise StvmError(
                images[stem], f"image has no label ({counts}; expected {expect_label(stem)})"
            )
        raise StvmError(labels[stem], f"label has no image ({counts})")
    return [Sample(s, images[s], labels[s]) for s in sorted(images)]


def _flat_pairs(root: Path, image_sub: str, label_sub: str, layout: str) -> list[Sample]:
    """Pairs ``root/image_sub/X.png`` with ``root/label_sub/X.png`` (GTA5 and SYNTHIA layouts)."""
    _require_dir(root, "dataset root")
    image_dir = _require_dir(root / image_sub, "image folder", layout)
    label_dir = _require_dir(root / label_sub, "label folder", layout)
    images, labels = _files(image_dir, ".png"), _files(label_dir, ".png")
    return _pair(images, labels, image_dir, lambda s: label_dir / f"{s}.png")


def gta5_samples(root: Path) -> list[Sample]:
    """All GTA5 pairs ``images/NNNNN.png`` + ``labels/NNNNN.png`` (stem ``NNNNN``), sorted."""
    return _flat_pairs(Path(root), "images", "labels", "images/NNNNN.png + labels/NNNNN.png")


def synthia_samples(root: Path) -> list[Sample]:
    """All SYNTHIA-RAND-CITYSCAPES pairs ``RGB/X.png`` + ``GT/LABELS/X.png``, sorted."""
    return _flat_pairs(Path(root), "RGB", "GT/LABELS", "RGB/*.png + GT/LABELS/*.png")


def _city_files(split_dir: Path, suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for city in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        found.update(_files(_utf8(city, city.name), suffix))
    return found


def cityscapes_samples(root: Path, split: str) -> list[Sample]:
    """Cityscapes ``leftImg8bit/{split}/{city}/*`` with ``gtFine/.../*_gtFine_labelIds.png``.

    The stem is ``{city}_{seq}_{frame}``; ``split`` is ``train`` or ``val``.
    """
    root = _require_dir(Path(root), "dataset root")
    layout = (
        "leftImg8bit/{split}/{city}/*_leftImg8bit.png + gtFine/{split}/{city}/*_gtFine_labelIds.png"
    )
    image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes image folder", layout)
    label_dir = _require_dir(root / "gtFine" / split, "Cityscapes label folder", layout)
    images = _city_files(image_dir, CITYSCAPES_IMAGE_SUFFIX)
    labels = _city_files(label_dir, CITYSCAPES_LABEL_SUFFIX)

    def expect(stem: str) -> Path:
        return label_dir / stem.split("_")[0] / f"{stem}{CITYSCAPES_LABEL_SUFFIX}"

    return _pair(images, labels, image_dir, expect)


def nthu_samples(root: Path, city: str, split: str) -> list[Sample]:
    """NTHU ``{city}/Images/Train`` (unlabeled, .jpg else .png) or ``Test`` (+ ``_eval.png``)."""
    if split not in ("train", "test"):
        raise StvmError(None, f"NTHU split must be 'train' or 'test' (got {split!r})")
    city_dir = _require_dir(
        _require_dir(Path(root), "dataset root") / city,
        "NTHU city folder",
        "{City}/Images/{Train,Test}, {City}/Labels/Test",
    )
    if split == "train":
        image_dir = _require_dir(city_dir / "Images" / "Train", "NTHU train image folder")
        images = {**_files(image_dir, ".png"), **_files(image_dir, ".jpg")}  # .jpg wins over .png
        if not images:
            raise StvmError(image_dir, "no images found (empty split)")
        return [Sample(s, images[s], None) for s in sorted(images)]
    image_dir = _require_dir(city_dir / "Images" / "Test", "NTHU test image folder")
    label_dir = _require_dir(city_dir / "Labels" / "Test", "NTHU test label folder")
    images, labels = _files(image_dir, ".png"), _files(label_dir, NTHU_LABEL_SUFFIX)
    return _pair(images, labels, image_dir, lambda s: label_dir / f"{s}{NTHU_LABEL_SUFFIX}")


def _visible_files(folder: Path, suffixes: tuple[str, ...], exclude: Path | None) -> list[Path]:
    """Files under ``folder`` (recursively, sorted) with one of ``suffixes`` (any case), skipping
    hidden files and folders and everything under ``exclude``."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in suffixes or not p.is_file():
            continue  # not a file: a folder, or a broken or looping link
        if exclude is not None and real_path(p).is_relative_to(exclude):
            continue
        found.append(_utf8(p, str(rel)))
    return found


def tree_stems(
    folder: Path, suffixes: tuple[str, ...], exclude: Path | None = None
) -> dict[str, Path]:
    """``{stem: file}`` of every file under ``folder`` (nested) ending in one of ``suffixes``.

    The stem is the relative path without its suffix, ``/`` written as ``__`` (``cam1/f001.jpg``
    -> ``cam1__f001``): unique in a flat output folder and stable (it depends on the file's own
    path only). Files that would share a stem (``f.jpg`` and ``f.png``) keep their suffix
    (``f_jpg``, ``f_png``); a clash that remains is an error naming both files.
    """
    groups: dict[str, list[Path]] = {}
    for p in _visible_files(folder, suffixes, exclude):
        base = p.relative_to(folder).with_suffix("").as_posix().replace("/", "__")
        groups.setdefault(base, []).append(p)
    out: dict[str, Path] = {}
    for base, paths in sorted(groups.items()):
        for p in paths:
            stem = base if len(paths) == 1 else f"{base}_{p.suffix[1:]}"
            if stem in out:
                raise StvmError(p, f"output name {stem!r} clashes with {out[stem]} (rename one)")
            out[stem] = p
    return dict(sorted(out.items()))


def folder_samples(root: Path, labels: Path | None = None) -> dict[str, list[Sample]]:
    """A user's folder: every PNG/JPEG under ``root`` -> ``train`` (unlabeled); with ``labels``,
    the same images paired by relative stem with ``labels/<same path>.png`` -> also ``val``.

    A label folder inside ``root`` is skipped when listing images (so DVC can track both as one
    dependency). Without images, or with an image or label that has no partner, a StvmError.
    """
    root = _require_dir(Path(root), "image folder")
    label_dir = None if labels is None else _require_dir(Path(labels), "label folder")
    exclude = None if label_dir is None else real_path(label_dir)
    images = tree_stems(root, IMAGE_SUFFIXES, exclude)
    if not images:
        raise StvmError(root, "no images found (PNG or JPEG, searched recursively)")
    train = [Sample(s, images[s], None) for s in images]
    if label_dir is None:
        return {"train": train}
    found = tree_stems(label_dir, (".png",))

    def expect(stem: str) -> Path:
        return label_dir / (images[stem].relative_to(root).with_suffix(".png"))

    return {"train": train, "val": _pair(images, found, root, expect)}


def _cv2_decode(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode`` (unchanged depth/channels) without OpenCV's own warning lines on stderr."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return (
            cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
            if data
            else None
        )
    except cv2.error:
        return None
    finally:
        cv2.utils.logging.setLogLevel(level)


def decode_image(data: bytes, path: Path) -> np.ndarray:
    """Decode an 8-bit RGB (or RGBA, alpha dropped) image file's bytes to HxWx3 uint8 RGB."""
    check_pixels(data, path)
    img = _cv2_decode(data)
    if img is None:
        raise StvmError(path, "unreadable or corrupt image file")
    if img.dtype != np.uint8:
        raise StvmError(path, f"expected an 8-bit RGB image, got {img.dtype} samples")
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        channels = 1 if img.ndim == 2 else img.shape[2]
        raise StvmError(path, f"expected an RGB image with 3 channels, got {channels}")
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def _decode_indexed(data: bytes, path: Path) -> np.ndarray:
    """Palette indices (mode P) or grey values (mode L) of an 8-bit 1-channel PNG, unconverted."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise StvmError(
                    path,
                    f"expected an 8-bit single-channel label (PIL mode P or L), got mode {im.mode}",
                )
            return np.array(im, dtype=np.uint8)
    except StvmError:
        raise
    except UnidentifiedImageError:
        raise StvmError(
            path, "unreadable or corrupt label file (not a recognised image format)"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise StvmError(path, f"unreadable or corrupt label file ({str(err)[:160]})") from None


def _decode_synthia(data: bytes, path: Path) -> np.ndarray:
    """The class channel (R, index 2 in OpenCV's BGR order) of a 16-bit 3-channel SYNTHIA label."""
    lab = _cv2_decode(data)
    if lab is None:
        raise StvmError(path, "unreadable or corrupt label file")
    if lab.ndim != 3 or lab.shape[2] != 3:
        channels = 1 if lab.ndim == 2 else lab.shape[2]
        raise StvmError(
            path, f"expected a 3-channel SYNTHIA label (class in R), got {channels} channel(s)"
        )
    if lab.dtype not in (np.uint16, np.uint8):
        raise StvmError(
            path, f"expected 16-bit (or 8-bit) samples in a SYNTHIA label, got {lab.dtype}"
        )
    return lab[:, :, 2]


def decode_label(data: bytes, path: Path, encoding: str) -> np.ndarray:
    """Decode a label file's bytes to HxW uint8 raw ids; ids above the encoding's range fail."""
    if encoding not in VALID_ID_MAX:
        raise StvmError(
            None, f"unknown label encoding {encoding!r} (expected one of {sorted(VALID_ID_MAX)})"
        )
    check_png(data, path)  # a JPEG's artefacts would silently change ids
    check_pixels(data, path)
    raw = _decode_synthia(data, path) if encoding == "synthia" else _decode_indexed(data, path)
    top = VALID_ID_MAX[encoding]
    outside = (raw > top) & (raw != IGNORE) if encoding == "trainids" else raw > top
    if int(raw.max(initial=0)) > top and outside.any():
        bad = np.unique(raw[outside])
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        allowed = f"0..{top}" + (f" or {IGNORE}" if encoding == "trainids" else "")
        raise StvmError(path, f"label ids outside the {encoding} range {allowed}: {shown}")
    return raw.astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Read an 8-bit RGB image file as HxWx3 uint8 RGB (StvmError naming the file otherwise)."""
    return decode_image(read_bytes(path), Path(path))


def read_label(path: Path, encoding: str) -> np.ndarray:
    """Read a raw label file of ``encoding`` (gta5, synthia, cityscapes, nthu) as HxW uint8 ids."""
    return decode_label(read_bytes(path), Path(path), encoding)
