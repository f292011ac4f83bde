"""Rendering of the synthetic benchmark: a material map painted as RGB in a domain style.

Why apart: the scene fixes the label; everything here changes only the image (palette, class
restyling, texture, light, sensor), which is what lets a shift part be switched on alone.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from stvm.data.synth_canvas import Canvas
from stvm.data.synth_style import CLASS_PALETTE, MAT, MAT_GAIN, MATERIALS, MAT_ROUGH, DomainStyle

#: Structured texture per material (part ``texture``): (kind, period in pixels at width 256).
#: Bricks on facades and walls, tiles on sidewalks, streaks on road surfaces, blotches on greenery.
_PATTERN: dict[str, tuple[str, float]] = {
    "building": ("bricks", 4.0), "wall": ("bricks", 3.0), "sidewalk": ("tiles", 6.0),
    "curb": ("tiles", 3.0), "road": ("streaks", 5.0), "parking": ("streaks", 3.0),
    "canopy": ("blotches", 6.0), "terrain": ("blotches", 8.0),
}


def _patterns(mat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float32 in [-1, 1]: each patterned material's texture, 0 on every other material."""
    h, w = mat.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for name, (kind, period) in _PATTERN.items():
        sel = mat == MAT[name]
        if not sel.any():
            continue
        p = np.float32(max(period * w / 256.0, 2.0))
        ox, oy = rng.uniform(0.0, float(p), 2).astype(np.float32)
        if kind in ("bricks", "tiles"):
            row = np.floor((yy + oy) / p)
            shift_x = (row % 2) * p if kind == "bricks" else 0.0
            mortar = (((yy + oy) % p) < 1.0) | (((xx + ox + shift_x) % (2 * p)) < 1.0)
            tex = np.where(mortar, -1.0, 0.3).astype(np.float32)
        elif kind == "streaks":
            tex = np.sin(2 * np.pi * (yy + oy) / p + 0.3 * np.sin(xx / p)).astype(np.float32)
        else:
            low = cv2.resize(rng.standard_normal((int(h / p) + 2, int(w / p) + 2)).astype(np.float32),
                             (w, h), interpolation=cv2.INTER_CUBIC)
            tex = np.clip(low, -1.0, 1.0)
        out[sel] = tex[sel]
    return out


def _colour_table(cv: Canvas, style: DomainStyle) -> np.ndarray:
    """(materials * 256, 3) colour of every (material, instance) pair, saturation applied."""
    pal = np.array([style.palette[m[0]] for m in MATERIALS], np.float32)
    if style.class_restyle != 0.0:
        for name, colour in CLASS_PALETTE.items():
            i = MAT[name]
            pal[i] += np.float32(style.class_restyle) * (np.asarray(colour, np.float32) - pal[i])
    vecs = np.zeros((256, 4), np.float32)
    vecs[: len(cv.vecs)] = cv.vecs
    var = style.instance_lum * vecs[:, :1] + style.instance_chroma * vecs[:, 1:]
    table = pal[:, None, :] + MAT_GAIN[:, None, None] * var[None]
    gray = table.mean(-1, keepdims=True)
    return (gray + style.saturation * (table - gray)).reshape(-1, 3)


@functools.lru_cache(maxsize=8)
def _unit_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5): (y, x), each (h, w) float32."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5


def render(cv: Canvas, style: DomainStyle, rng: np.random.Generator,
           pattern_rng: np.random.Generator) -> np.ndarray:
    """Paint the material map in ``style``: palette, instance colours, texture, light, noise.

    ``pattern_rng`` is drawn from only when ``style.texture_pattern`` is on, so switching the
    texture part on changes the textures and nothing else.
    """
    h, w = cv.mat.shape
    img = _colour_table(cv, style)[cv.mat.astype(np.intp) * 256 + cv.var]
    img = img.reshape(h, w, 3)
    if style.texture_pattern > 0:
        img += (np.float32(style.texture_pattern) * _patterns(cv.mat, pattern_rng))[..., None]
    if style.texture_noise > 0:
        low = cv2.resize(rng.standard_normal((h // 8 + 2, w // 8 + 2), dtype=np.float32),
                         (w, h), interpolation=cv2.INTER_CUBIC)
        field_ = 0.6 * low + 0.8 * rng.standard_normal((h, w), dtype=np.float32)
        img += (style.texture_noise * MAT_ROUGH[cv.mat] * field_)[..., None]
    yy, xx = _unit_grid(h, w)
    theta = rng.uniform(0.0, 2 * np.pi)
    light = 1.0 + 2.0 * style.light_gradient * (xx * np.cos(theta) + yy * np.sin(theta))
    light *= 1.0 - style.vignette * (xx**2 + yy**2) / 0.5
    exposure = style.brightness * np.exp(rng.normal(0.0, 1.0) * style.exposure_jitter)
    tint = 1.0 + rng.uniform(0.0, 1.0) * (np.asarray(style.tint, np.float32) - 1.0)
    img *= (light * np.float32(exposure))[..., None] * tint.astype(np.float32)
    sigma = style.blur_sigma * w / 256.0
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if style.sensor_noise > 0:
        img += np.float32(style.sensor_noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
