"""Grouped bar charts drawn with OpenCV, in the style of the line charts (``figures``).

One group of bars per category (a class), one bar per series (a run) in each group, a darker line
at zero, category names written bottom-up under each group's centre, and horizontal grid lines
labelled with their own values. Used for the per-class Δ figures; returns RGB uint8 arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stvm.report.figures import (
    BLACK,
    GREY,
    SUPER,
    draw_grid,
    draw_legend,
    draw_text,
    draw_ylabel,
    legend_width,
    paste_dark,
    rotated_text,
)

LABEL_SCALE = 0.42  # category names under the axis


@dataclass(frozen=True)
class Bars:
    """One bar per category: legend label, values (None or NaN: no bar), RGB colour."""

    label: str
    values: list[float | None]
    colour: tuple[int, int, int]


def _finite(bars: list[Bars]) -> list[float]:
    return [v for b in bars for v in b.values if v is not None and math.isfinite(v)]


def value_span(bars: list[Bars]) -> tuple[float, float]:
    """The y range: every bar and zero, 5 % padding ((-1, 1) when every value is 0 or there is none)."""
    vals = _finite(bars) + [0.0]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return -1.0, 1.0
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def bar_chart(categories: list[str], bars: list[Bars], title: str, ylabel: str,
              size: tuple[int, int] = (900, 460)) -> np.ndarray:
    """An RGB grouped bar chart of ``bars`` over ``categories`` with grid, zero line and legend."""
    w, h = size[0] * SUPER, size[1] * SUPER
    img = np.full((h, w, 3), 255, np.uint8)
    names = [rotated_text(c, LABEL_SCALE) for c in categories]
    label_h = max((n.shape[0] for n in names), default=0) + 8 * SUPER
    box = (80 * SUPER, 40 * SUPER, w - 20 * SUPER - legend_width(bars), h - 8 * SUPER - label_h)
    lo, hi = value_span(bars)

    def py(v: float) -> int:
        return int(round(box[3] - (v - lo) / (hi - lo) * (box[3] - box[1])))

    draw_grid(img, box, "y", (lo, hi), py)
    cv2.line(img, (box[0], py(0.0)), (box[2], py(0.0)), GREY, SUPER, cv2.LINE_AA)
    slot = (box[2] - box[0]) / max(len(categories), 1)
    width = 0.8 * slot / max(len(bars), 1)
    for i, name in enumerate(names):
        left = box[0] + i * slot + 0.1 * slot
        for j, b in enumerate(bars):
            v = b.values[i]
            if v is not None and math.isfinite(v):
                x0, x1 = int(round(left + j * width)), int(round(left + (j + 1) * width)) - SUPER
                cv2.rectangle(img, (x0, min(py(0.0), py(v))), (max(x0, x1), max(py(0.0), py(v))), b.colour, -1)
        paste_dark(img, name, box[3] + 6 * SUPER, int(round(box[0] + (i + 0.5) * slot - name.shape[1] / 2)))
    cv2.rectangle(img, box[:2], box[2:], BLACK, SUPER, cv2.LINE_AA)
    draw_text(img, title, (w // 2, 26 * SUPER), 0.62, anchor="centre")
    draw_ylabel(img, ylabel, box)
    draw_legend(img, bars, box)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
