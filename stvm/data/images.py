"""Image and label files and the network's input scaling: every PNG read or written, one place.

Why one module: training, adaptation, evaluation, prediction, export and the report all read the
same prepared PNGs and scale them the same way; keeping the readers, the writer and the ImageNet
normalisation here (beside the datasets, below every stage) lets all of them import it without one
stage importing another. The raw-dataset decoders (GTA5 palettes, SYNTHIA 16-bit, ...) stay in
``stvm.data.readers``: they read formats as distributed, these read what ``prepare`` wrote.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

from stvm.limits import check_pixels, check_png  # isort: skip  (sets the decoders' pixel limits before cv2 loads)

import cv2
import numpy as np
import torch
from PIL import Image

from stvm.data.labels import CLASS_NAMES, IGNORE
from stvm.errors import StvmError
from stvm.io import atomic_path

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


@functools.lru_cache(maxsize=16)
def _mean_std(device: torch.device, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics on ``device``, copied there once (a host-to-GPU copy per step would sync)."""
    shape = (1, 3, 1, 1) if batched else (3, 1, 1)
    return IMAGENET_MEAN.to(device).view(shape), IMAGENET_STD.to(device).view(shape)


def standardize(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB, 3xHxW or Bx3xHxW -> minus the ImageNet mean, divided by its std (on x's device).

    The one input scaling of every network here (train, adapt, evaluate, predict; export records it).
    """
    mean, std = _mean_std(x01.device, x01.ndim != 3)
    return (x01 - mean) / std


def normalize(img_uint8_hwc: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 network input (``x/255``, then ``standardize``)."""
    img = np.asarray(img_uint8_hwc)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    return standardize(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 Bx3xHxW batch -> network input on the images' device (same arithmetic as ``normalize``)."""
    return standardize(images.float().div_(255.0))


def read_bytes(path: Path, what: str = "file") -> bytes:
    """The file's bytes; a missing or unreadable file is a StvmError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise StvmError(path, f"cannot read {what} ({err.strerror or err})") from None


def _decode(data: bytes, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
    except cv2.error:
        return None


def read_rgb(path: Path) -> np.ndarray:
    """Read an RGB image file as HxWx3 uint8 (its pixel count checked from the header first)."""
    data = read_bytes(path)
    check_pixels(data, Path(path))
    img = _decode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise StvmError(path, "unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """Read a prepared single-channel uint8 trainId PNG (a PNG by its magic bytes: a JPEG is no label)."""
    data = read_bytes(path)
    check_png(data, Path(path))
    check_pixels(data, Path(path))
    lab = _decode(data, cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2 or lab.dtype != np.uint8:
        raise StvmError(path, "not a single-channel 8-bit label PNG")
    return lab


def read_trainid_png(path: Path, what: str = "label") -> np.ndarray:
    """Read any single-channel trainId PNG (8 or 16 bit, palette) as HxW uint8, values checked.

    The strict reader for files stvm did not write (``stvm score``, evaluation labels): the file must
    be a PNG by its magic bytes (a JPEG's artefacts would change ids), declare at most
    ``stvm.limits.MAX_PIXELS`` pixels (checked from the header, before decoding) and hold trainIds
    0..18 or 255 only; anything else is a StvmError naming ``path``.
    """
    data = read_bytes(path, f"{what} file")
    check_png(data, path, what)
    check_pixels(data, path)
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            arr = np.array(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise StvmError(path, f"cannot read {what} PNG ({str(err)[:160]})") from None
    if arr.ndim != 2:
        raise StvmError(path, f"{what} has {arr.shape[2]} channels (mode {mode}); expected a single-channel trainId PNG")
    if not np.issubdtype(arr.dtype, np.integer):
        raise StvmError(path, f"{what} has non-integer pixels (mode {mode})")
    if arr.dtype == np.uint8:
        counts = np.bincount(arr.ravel(), minlength=256)
        bad = np.flatnonzero(counts[len(CLASS_NAMES) : IGNORE]) + len(CLASS_NAMES)
    else:
        values = np.unique(arr)
        bad = values[((values < 0) | (values >= len(CLASS_NAMES))) & (values != IGNORE)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise StvmError(path, f"{what} values {shown} outside trainIds 0..{len(CLASS_NAMES) - 1} and {IGNORE}")
    return arr.astype(np.uint8, copy=False)


def _text_chunk(key: str, value: str) -> bytes:
    """A PNG ``tEXt`` chunk (Latin-1 keyword and text)."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    return struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))


def write_png(path: Path, array: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write a uint8 PNG atomically: grey for HxW, RGB for HxWx3 (a failed write leaves nothing);
    ``text`` goes into ``tEXt`` chunks right after the header (Pillow's ``Image.info`` reads them)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    try:
        ok, buf = cv2.imencode(".png", array)
    except cv2.error as err:
        raise StvmError(path, f"cannot write PNG ({err})") from None
    if not ok:
        raise StvmError(path, "PNG encoding failed")
    data = buf.tobytes()
    if text:  # after the 8-byte signature and the 25-byte IHDR chunk
        data = data[:33] + b"".join(_text_chunk(k, v) for k, v in text.items()) + data[33:]
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
