"""Decoder pixel limits and label magic bytes (``stvm.limits``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stvm import limits
from stvm.errors import StvmError
from tests.test_bad_inputs import png_bomb


def test_limits_are_set_for_both_decoders():
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(limits.MAX_PIXELS)
    assert Image.MAX_IMAGE_PIXELS == limits.MAX_PIXELS


@pytest.mark.parametrize("side", [8193, 13500])  # just over the limit (Pillow only warns), and 182 Mpx
def test_header_check_refuses_bombs(side):
    with pytest.raises(StvmError, match=f"{side}x{side} = .* over the decompression-bomb limit"):
        limits.check_pixels(png_bomb(side, side), Path("x.png"))
    assert limits.check_pixels(png_bomb(64, 32), Path("x.png")) == (64, 32)


def test_opencv_refuses_a_bomb_by_itself():
    import cv2

    with pytest.raises(cv2.error, match="CV_IO_MAX_IMAGE_PIXELS"):
        cv2.imdecode(np.frombuffer(png_bomb(8193, 8193), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("fmt, says", [("JPEG", "it is a JPEG file"), ("BMP", "it is a BMP file"),
                                       ("TIFF", "it is a TIFF file")])
def test_labels_must_be_png_by_magic_bytes(fmt, says):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, fmt)
    with pytest.raises(StvmError, match=says):
        limits.check_png(buf.getvalue(), Path("lab.png"))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, "PNG")
    limits.check_png(buf.getvalue(), Path("lab.png"))
