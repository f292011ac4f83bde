"""Decompression-bomb limits for every image stvm decodes (OpenCV and Pillow), set explicitly.

A 200 KB PNG can declare 182 Mpx and make a decoder allocate gigabytes. ``MAX_PIXELS`` (64 Mpx,
8192 x 8192: 30x a Cityscapes frame) is applied three ways: OpenCV's ``OPENCV_IO_MAX_IMAGE_PIXELS``
(read once when cv2 is loaded, so this module must be imported before ``cv2``; ``stvm/__init__``
does), Pillow's ``Image.MAX_IMAGE_PIXELS``, and ``check_pixels``, which reads only the header and
refuses with a message naming the file before any decoder allocates the pixels.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

MAX_PIXELS = 8192 * 8192
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)

from PIL import Image  # noqa: E402  (after the environment is set)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAGIC_NAMES = ((b"\xff\xd8\xff", "a JPEG"), (b"GIF8", "a GIF"), (b"BM", "a BMP"), (b"RIFF", "a WebP"),
                (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"))


def check_pixels(source: bytes | Path, path: Path) -> tuple[int, int] | None:
    """The (width, height) an image file declares, read from its header only; a StvmError naming
    ``path`` when it exceeds ``MAX_PIXELS``. None when Pillow does not know the format (the decoder
    that reads it then applies its own limit)."""
    from stvm.errors import StvmError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        width, height = _declared_size(source)
    except OSError as err:
        if isinstance(source, Path) and not isinstance(err, Image.UnidentifiedImageError):
            raise StvmError(path, f"cannot read file ({err.strerror or err})") from None
        return None
    except (SyntaxError, ValueError):
        return None
    if width * height > MAX_PIXELS:
        raise StvmError(path, f"image declares {width}x{height} = {width * height:,} pixels, over the "
                              f"decompression-bomb limit of {MAX_PIXELS:,} (stvm.limits.MAX_PIXELS)")
    return width, height


def _declared_size(source: bytes | Path) -> tuple[int, int]:
    """Width and height from a PNG header (what a DecompressionBombError was raised for)."""
    head = source[:24] if isinstance(source, bytes) else Path(source).open("rb").read(24)
    if head.startswith(PNG_MAGIC):
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return MAX_PIXELS, 2  # another format Pillow refused as a bomb: report it as over the limit


def check_png(data: bytes, path: Path, what: str = "label") -> None:
    """A label must be a PNG (lossless): refuse anything else by its magic bytes, naming what it is."""
    from stvm.errors import StvmError

    if data.startswith(PNG_MAGIC):
        return
    kind = next((name for magic, name in _MAGIC_NAMES if data.startswith(magic)), None)
    found = f"it is {kind} file" if kind else "not a PNG file"
    raise StvmError(path, f"cannot read {what} as a PNG: {found} (by its magic bytes); "
                          "labels must be lossless PNG files")
