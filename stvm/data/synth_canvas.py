"""Drawing surface of the synthetic benchmark: a pinhole camera and a material/instance canvas.

Why apart: both the street (``synth_scene``) and the objects on it (``synth_objects``) draw through
these primitives; they know nothing of styles or labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from stvm.data.synth_style import MAT

# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """Pinhole camera at the origin looking along +Z; X right, Y up (metres), image y down."""

    f: float
    cx: float
    cy: float
    height: float = 1.6

    def project(self, x: Any, y: Any, z: Any) -> np.ndarray:
        """World points -> (..., 2) image coordinates."""
        z = np.maximum(np.asarray(z, np.float64), 0.5)
        return np.stack(np.broadcast_arrays(self.cx + self.f * np.asarray(x) / z,
                                            self.cy - self.f * (np.asarray(y) - self.height) / z),
                        axis=-1)


class Canvas:
    """Material map + per-pixel instance index; the label is derived from the material map."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.mat = np.full((height, width), MAT["sky"], np.uint8)
        self.var = np.zeros((height, width), np.uint8)
        self.vecs = [np.zeros(4)]
        self.rng = rng

    def instance(self) -> int:
        """A new random colour-variation vector (lum, r, g, b) in [-1, 1]; returns its index."""
        if len(self.vecs) >= 256:
            return int(self.rng.integers(1, 256))
        self.vecs.append(self.rng.uniform(-1.0, 1.0, 4))
        return len(self.vecs) - 1

    def polys(self, pts: np.ndarray | Sequence[np.ndarray], material: str, inst: int = 0) -> None:
        """Fill polygons given as image coordinates, shape (n, k, 2) or a list of (k, 2)."""
        if isinstance(pts, np.ndarray):
            polys = list(np.round(np.clip(pts, -1e5, 1e5)).astype(np.int32))
        else:
            polys = [np.round(np.clip(p, -1e5, 1e5)).astype(np.int32) for p in pts]
        if polys:
            cv2.fillPoly(self.mat, polys, MAT[material])
            cv2.fillPoly(self.var, polys, inst)

    def rect(self, x0: float, y0: float, x1: float, y1: float, material: str,
             inst: int = 0) -> None:
        """Axis-aligned rectangle, at least one pixel wide and tall."""
        xa, xb = sorted((x0, x1))
        ya, yb = sorted((y0, y1))
        xa, ya = int(round(xa)), int(round(ya))
        xb, yb = max(int(round(xb)), xa + 1), max(int(round(yb)), ya + 1)
        h, w = self.mat.shape
        xa, xb, ya, yb = max(xa, 0), min(xb, w), max(ya, 0), min(yb, h)
        if xa < xb and ya < yb:
            self.mat[ya:yb, xa:xb] = MAT[material]
            self.var[ya:yb, xa:xb] = inst

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, material: str, inst: int = 0,
                thickness: int = -1) -> None:
        """Filled (or outlined) axis-aligned ellipse, radii at least one pixel."""
        c = (int(round(cx)), int(round(cy)))
        axes = (max(int(round(ax)), 1), max(int(round(ay)), 1))
        if max(abs(c[0]), abs(c[1])) > 100000:
            return
        cv2.ellipse(self.mat, c, axes, 0, 0, 360, MAT[material], thickness)
        cv2.ellipse(self.var, c, axes, 0, 0, 360, inst, thickness)

    def line(self, p0: Sequence[float], p1: Sequence[float], width: float, material: str,
             inst: int = 0) -> None:
        """Thick straight segment (at least one pixel)."""
        a = (int(round(p0[0])), int(round(p0[1])))
        b = (int(round(p1[0])), int(round(p1[1])))
        t = max(int(round(width)), 1)
        cv2.line(self.mat, a, b, MAT[material], t)
        cv2.line(self.var, a, b, inst, t)


def ground_quad(cam: Camera, x0: Any, x1: Any, z0: Any, z1: Any, y: float = 0.0) -> np.ndarray:
    """Image polygon(s) of horizontal rectangles [x0, x1] x [z0, z1] at height y: (..., 4, 2)."""
    x0, x1, z0, z1 = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (x0, x1, z0, z1)))
    return cam.project(np.stack([x0, x1, x1, x0], -1), y, np.stack([z0, z0, z1, z1], -1))


def side_quads(cam: Camera, x: float, z0: np.ndarray, z1: np.ndarray, y0: np.ndarray,
                y1: np.ndarray) -> np.ndarray:
    """(n, 4, 2) image polygons of vertical rectangles in the plane X = x (facing the road)."""
    z = np.stack([z0, z0, z1, z1], -1)
    y = np.stack([y0, y1, y1, y0], -1)
    return cam.project(x, y, z)


def front_quads(cam: Camera, z: float, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray,
                 y1: np.ndarray) -> np.ndarray:
    """(n, 4, 2) image polygons of vertical rectangles in the plane Z = z (facing the camera)."""
    x = np.stack([x0, x0, x1, x1], -1)
    y = np.stack([y0, y1, y1, y0], -1)
    return cam.project(x, y, z)


def window_grid(u0: float, u1: float, h: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, ...]:
    """Window rectangles (u0, u1, y0, y1) on a facade spanning [u0, u1] x [0, h] metres."""
    col_w, floor_h = rng.uniform(2.2, 3.2), rng.uniform(2.8, 3.6)
    win_w, win_h = col_w * rng.uniform(0.4, 0.65), floor_h * rng.uniform(0.4, 0.6)
    us = np.arange(u0 + col_w * 0.5, u1 - col_w * 0.5, col_w)
    ys = np.arange(floor_h * 0.9, h - floor_h * 0.8, floor_h)
    uu, yy = np.meshgrid(us, ys)
    uu, yy = uu.ravel(), yy.ravel()
    return uu - win_w / 2, uu + win_w / 2, yy, yy + win_h
