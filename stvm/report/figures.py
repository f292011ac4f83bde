"""Line charts drawn with OpenCV (no matplotlib at run time): axes, ticks, legend, title.

Drawn at ``SUPER`` times the requested size with anti-aliased lines and text, then shrunk with
area interpolation, so lines and glyphs come out smooth at ~800x400. Returns RGB uint8 arrays;
``png_bytes`` encodes them for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SUPER = 2
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, LIGHT, WHITE = (20, 20, 20), (110, 110, 110), (228, 228, 228), (255, 255, 255)
# Colour-blind-friendly qualitative palette (Okabe-Ito), RGB.
COLOURS = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (0, 0, 0), (240, 228, 66))


@dataclass(frozen=True)
class Series:
    """One line: legend label, x and y values (same length; NaN points are skipped), RGB colour;
    optionally a shaded band (lower, upper values at the same x), e.g. the spread over seeds."""

    label: str
    x: list[float]
    y: list[float]
    colour: tuple[int, int, int]
    band: tuple[list[float], list[float]] | None = None


def nice_ticks(lo: float, hi: float, target: int = 5, integer: bool = False) -> list[float]:
    """About ``target`` round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi];
    ``integer``: whole steps only (an iteration axis has no tick at 2.5)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = max((hi - lo) / max(target, 1), 1.0 if integer else 0.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and (not integer or float(m * mag).is_integer()))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def step_decimals(step: float) -> int:
    """Decimals that write every multiple of ``step`` exactly: 5 needs none, 2.5 one, 0.25 two."""
    return next((d for d in range(12) if abs(round(step, d) - step) <= 1e-9 * abs(step)), 12)


def tick_label(value: float, step: float) -> str:
    """The label of the grid line at ``value`` (ticks ``step`` apart): it reads back as ``value``, with
    the same decimals on every tick of the axis; scientific for tiny or huge values."""
    if abs(value) <= 1e-9 * abs(step) or value == 0:
        return "0"
    decimals = step_decimals(step) if step > 0 else 2
    if decimals > 4 or abs(value) >= 1e5:  # mantissa digits down to the step's last digit
        step_exp = math.floor(math.log10(step) + 1e-9) if step > 0 else math.floor(math.log10(abs(value)))
        digits = math.floor(math.log10(abs(value)) + 1e-9) - step_exp + step_decimals(step / 10 ** step_exp)
        return f"{value:.{max(0, digits)}e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.{decimals}f}"


def draw_text(img: np.ndarray, s: str, org: tuple[int, int], scale: float, colour=BLACK, anchor: str = "left") -> None:
    """Anti-aliased text at ``org`` (baseline), in super-sampled pixels; anchor left/centre/right."""
    (w, _), _ = cv2.getTextSize(s, FONT, scale * SUPER, SUPER)
    x = org[0] - (w // 2 if anchor == "centre" else w if anchor == "right" else 0)
    cv2.putText(img, s, (int(x), int(org[1])), FONT, scale * SUPER, colour, SUPER, cv2.LINE_AA)


def _range(series: list[Series], axis: str) -> tuple[float, float]:
    bands = [v for s in series if s.band and axis == "y" for side in s.band for v in side]
    vals = [v for s in series for v in getattr(s, axis) if math.isfinite(v)] + [v for v in bands if math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    return (lo, hi) if axis == "x" else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))


def line_chart(series: list[Series], title: str, xlabel: str, ylabel: str,
               size: tuple[int, int] = (800, 400)) -> np.ndarray:
    """An RGB line chart of ``series`` with title, axis labels, tick labels, grid and legend."""
    w, h = size[0] * SUPER, size[1] * SUPER
    img = np.full((h, w, 3), 255, np.uint8)
    box = (80 * SUPER, 40 * SUPER, w - 20 * SUPER - legend_width(series), h - 55 * SUPER)  # left, top, right, bottom
    (x0, x1), (y0, y1) = _range(series, "x"), _range(series, "y")

    def px(x: float, y: float) -> tuple[int, int]:
        return (int(round(box[0] + (x - x0) / (x1 - x0) * (box[2] - box[0]))),
                int(round(box[3] - (y - y0) / (y1 - y0) * (box[3] - box[1]))))

    x_integer = all(float(v).is_integer() for s in series for v in s.x if math.isfinite(v))  # iterations
    _axes(img, box, (x0, x1), (y0, y1), px, x_integer)
    for s in series:
        if s.band is not None:
            _band(img, s, px)
    for s in series:
        pts = [px(x, y) for x, y in zip(s.x, s.y, strict=True) if math.isfinite(x) and math.isfinite(y)]
        if len(pts) == 1:
            cv2.circle(img, pts[0], 3 * SUPER, s.colour, -1, cv2.LINE_AA)
        elif pts:
            cv2.polylines(img, [np.array(pts, np.int32)], False, s.colour, 2 * SUPER, cv2.LINE_AA)
    draw_text(img, title, (w // 2, 26 * SUPER), 0.62, anchor="centre")
    draw_text(img, xlabel, ((box[0] + box[2]) // 2, h - 12 * SUPER), 0.5, GREY, anchor="centre")
    draw_ylabel(img, ylabel, box)
    draw_legend(img, series, box)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _band(img: np.ndarray, s: Series, px) -> None:
    """The series' band as a light fill (25 % of its colour over the white) behind every line."""
    lo, hi = s.band
    upper = [px(x, y) for x, y in zip(s.x, hi, strict=True) if math.isfinite(y)]
    lower = [px(x, y) for x, y in zip(s.x, lo, strict=True) if math.isfinite(y)][::-1]
    if len(upper) < 2:
        return
    layer = img.copy()
    cv2.fillPoly(layer, [np.array(upper + lower, np.int32)], s.colour, cv2.LINE_AA)
    cv2.addWeighted(layer, 0.25, img, 0.75, 0, dst=img)


def _axes(img: np.ndarray, box, xr: tuple[float, float], yr: tuple[float, float], px, x_integer: bool) -> None:
    """Grid lines, tick labels and the frame of the plot area."""
    draw_grid(img, box, "x", xr, lambda t: px(t, yr[0])[0], x_integer)
    draw_grid(img, box, "y", yr, lambda t: px(xr[0], t)[1])
    cv2.rectangle(img, box[:2], box[2:], BLACK, SUPER, cv2.LINE_AA)


def draw_grid(img: np.ndarray, box, axis: str, span: tuple[float, float], pos, integer: bool = False) -> None:
    """The grid lines of one axis and their labels, each label at its own line's pixel ``pos(value)``
    and reading back as the line's value (``tick_label``)."""
    ticks = nice_ticks(span[0], span[1], 6 if axis == "x" else 5, integer)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(span[1] - span[0]) or 1.0
    for t in ticks:
        at = pos(t)
        if axis == "x":
            cv2.line(img, (at, box[1]), (at, box[3]), LIGHT, SUPER, cv2.LINE_AA)
            draw_text(img, tick_label(t, step), (at, box[3] + 20 * SUPER), 0.45, anchor="centre")
        else:
            cv2.line(img, (box[0], at), (box[2], at), LIGHT, SUPER, cv2.LINE_AA)
            draw_text(img, tick_label(t, step), (box[0] - 8 * SUPER, at + 5 * SUPER), 0.45, anchor="right")


def draw_ylabel(img: np.ndarray, label: str, box) -> None:
    """The y-axis label, rotated 90 degrees, left of the tick labels."""
    strip = rotated_text(label, 0.5, GREY)
    paste_dark(img, strip, max(0, (box[1] + box[3]) // 2 - strip.shape[0] // 2), 6 * SUPER)


def rotated_text(label: str, scale: float, colour=BLACK) -> np.ndarray:
    """``label`` on white, turned to read bottom-up (super-sampled pixels; its width is the text's height)."""
    (tw, th), base = cv2.getTextSize(label, FONT, scale * SUPER, SUPER)
    strip = np.full((th + base + 4, tw + 4, 3), 255, np.uint8)
    cv2.putText(strip, label, (2, th + 2), FONT, scale * SUPER, colour, SUPER, cv2.LINE_AA)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def paste_dark(img: np.ndarray, strip: np.ndarray, top: int, left: int) -> None:
    """Draw ``strip`` (dark on white) into ``img`` at (top, left), cut at the image edge; white is see-through."""
    strip = strip[: max(0, img.shape[0] - top), : max(0, img.shape[1] - left)]
    region = img[top: top + strip.shape[0], left: left + strip.shape[1]]
    region[:] = np.minimum(region, strip)


def legend_width(series: list[Any], scale: float = 0.45) -> int:
    """Width of the legend box in super-sampled pixels (0 without series; any item with ``label``)."""
    if not series:
        return 0
    return max(cv2.getTextSize(s.label, FONT, scale * SUPER, SUPER)[0][0] for s in series) + 52 * SUPER


def draw_legend(img: np.ndarray, series: list[Any], box) -> None:
    """A framed legend right of the plot area, top-aligned (one row per series), so it hides no data
    (any items with ``label`` and ``colour``: line series or bars)."""
    if not series:
        draw_text(img, "no data", ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2), 0.6, GREY, anchor="centre")
        return
    row, scale = 20 * SUPER, 0.45
    left, top = box[2] + 10 * SUPER, box[1]
    right, bottom = left + legend_width(series, scale) - 10 * SUPER, top + row * len(series) + 8 * SUPER
    cv2.rectangle(img, (left, top), (right, bottom), WHITE, -1)
    cv2.rectangle(img, (left, top), (right, bottom), GREY, SUPER, cv2.LINE_AA)
    for i, s in enumerate(series):
        y = top + row * i + 18 * SUPER
        cv2.line(img, (left + 8 * SUPER, y - 5 * SUPER), (left + 32 * SUPER, y - 5 * SUPER), s.colour, 3 * SUPER,
                 cv2.LINE_AA)
        draw_text(img, s.label, (left + 38 * SUPER, y), scale)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an RGB uint8 image (deterministic bytes for identical pixels)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
