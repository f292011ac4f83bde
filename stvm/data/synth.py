"""Built-in synthetic domain-shift benchmark: procedural street scenes in GTA5 / Cityscapes layouts.

Why: the real datasets cannot be downloaded here, so the pipeline needs a small benchmark with a
real, controllable domain gap to run end to end. The *source* domain imitates a game engine (flat
saturated colours, sharp edges, uniform light) and is written exactly like the GTA5 download; the
*target* domain imitates camera footage (muted, hue-shifted colours, texture, blur, sensor noise,
lighting gradients, vignetting, time-of-day tint, a different street layout) and is written exactly
like the Cityscapes download. The gap is mostly appearance: both domains share the scene grammar
and the class shapes, so self-training on unlabeled target images has something to recover.

Every pixel is painted as a *material* (``road``, ``lane``, ``window``, ...); the label is the
material's Cityscapes id, so image and label agree exactly. ``shift`` interpolates every
:class:`DomainStyle` field from the source style (0) to the target style (1); ``shift=0`` makes the
two domains identically distributed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from stvm.errors import StvmError
from stvm.io import atomic_dir, atomic_path, write_json

# --------------------------------------------------------------------------------------------
# Cityscapes label table (cityscapesScripts helpers/labels.py): id -> (name, colour).
# --------------------------------------------------------------------------------------------
CITYSCAPES_LABELS: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("unlabeled", (0, 0, 0)), 1: ("ego vehicle", (0, 0, 0)),
    2: ("rectification border", (0, 0, 0)), 3: ("out of roi", (0, 0, 0)),
    4: ("static", (0, 0, 0)), 5: ("dynamic", (111, 74, 0)), 6: ("ground", (81, 0, 81)),
    7: ("road", (128, 64, 128)), 8: ("sidewalk", (244, 35, 232)), 9: ("parking", (250, 170, 160)),
    10: ("rail track", (230, 150, 140)), 11: ("building", (70, 70, 70)),
    12: ("wall", (102, 102, 156)), 13: ("fence", (190, 153, 153)),
    14: ("guard rail", (180, 165, 180)), 15: ("bridge", (150, 100, 100)),
    16: ("tunnel", (150, 120, 90)), 17: ("pole", (153, 153, 153)),
    18: ("polegroup", (153, 153, 153)), 19: ("traffic light", (250, 170, 30)),
    20: ("traffic sign", (220, 220, 0)), 21: ("vegetation", (107, 142, 35)),
    22: ("terrain", (152, 251, 152)), 23: ("sky", (70, 130, 180)),
    24: ("person", (220, 20, 60)), 25: ("rider", (255, 0, 0)), 26: ("car", (0, 0, 142)),
    27: ("truck", (0, 0, 70)), 28: ("bus", (0, 60, 100)), 29: ("caravan", (0, 0, 90)),
    30: ("trailer", (0, 0, 110)), 31: ("train", (0, 80, 100)), 32: ("motorcycle", (0, 0, 230)),
    33: ("bicycle", (119, 11, 32)),
}
#: The 19 evaluation classes as Cityscapes ids, in trainId order.
TRAIN_CLASS_IDS: tuple[int, ...] = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                    31, 32, 33)
#: 768-entry PIL palette: index = Cityscapes id, colour = official colour (GTA5 label palette).
CITYSCAPES_PALETTE: list[int] = [
    c for i in range(256) for c in CITYSCAPES_LABELS.get(i, ("", (0, 0, 0)))[1]]

# --------------------------------------------------------------------------------------------
# Materials: (name, Cityscapes id, texture roughness, instance-colour gain).
# --------------------------------------------------------------------------------------------
_MATERIALS: tuple[tuple[str, int, float, float], ...] = (
    ("sky", 23, 0.35, 0.0), ("road", 7, 0.8, 0.0), ("lane", 7, 0.4, 0.0),
    ("sidewalk", 8, 0.9, 0.0), ("curb", 8, 0.5, 0.0), ("parking", 9, 0.8, 0.0),
    ("terrain", 22, 1.3, 0.25), ("building", 11, 0.7, 1.0), ("window", 11, 0.3, 0.3),
    ("wall", 12, 0.9, 0.4), ("fence", 13, 0.6, 0.3), ("fence_bar", 13, 0.4, 0.3),
    ("pole", 17, 0.3, 0.1), ("light_box", 19, 0.2, 0.0), ("lamp_red", 19, 0.1, 0.0),
    ("lamp_green", 19, 0.1, 0.0), ("sign", 20, 0.2, 0.6), ("canopy", 21, 1.6, 0.35),
    ("trunk", 21, 0.8, 0.1), ("person", 24, 0.4, 1.0), ("skin", 24, 0.2, 0.2),
    ("rider", 25, 0.4, 1.0), ("car", 26, 0.2, 1.0), ("car_side", 26, 0.2, 1.0),
    ("car_window", 26, 0.2, 0.1), ("car_light", 26, 0.1, 0.0), ("wheel", 26, 0.2, 0.0),
    ("truck", 27, 0.3, 1.0), ("truck_wheel", 27, 0.2, 0.0), ("bus", 28, 0.3, 1.0),
    ("bus_window", 28, 0.2, 0.1), ("bus_wheel", 28, 0.2, 0.0),
    ("motorcycle", 32, 0.3, 1.0), ("bicycle", 33, 0.2, 0.6), ("static", 4, 0.5, 0.5),
    ("ego", 1, 0.1, 0.0),
)
_MAT = {name: i for i, (name, *_rest) in enumerate(_MATERIALS)}
_MAT_CLASS = np.zeros(256, np.uint8)
_MAT_CLASS[: len(_MATERIALS)] = [m[1] for m in _MATERIALS]
_MAT_ROUGH = np.array([m[2] for m in _MATERIALS], np.float32)
_MAT_GAIN = np.array([m[3] for m in _MATERIALS], np.float32)

#: "Game look": saturated flat colours.
GAME_PALETTE: dict[str, tuple[int, int, int]] = {
    "sky": (70, 165, 255), "road": (85, 85, 100), "lane": (255, 255, 255),
    "sidewalk": (205, 180, 140), "curb": (225, 220, 210), "parking": (120, 105, 115),
    "terrain": (140, 210, 50), "building": (205, 135, 80), "window": (60, 130, 215),
    "wall": (190, 190, 150), "fence": (160, 110, 50), "fence_bar": (95, 60, 25),
    "pole": (125, 125, 140), "light_box": (35, 35, 40), "lamp_red": (255, 25, 25),
    "lamp_green": (25, 255, 70), "sign": (30, 80, 235), "canopy": (30, 165, 35),
    "trunk": (115, 70, 25), "person": (210, 40, 60), "skin": (245, 190, 145),
    "rider": (235, 70, 30), "car": (200, 40, 40), "car_side": (160, 30, 30),
    "car_window": (35, 60, 95), "car_light": (255, 60, 40), "wheel": (20, 20, 20),
    "truck": (240, 235, 220), "truck_wheel": (20, 20, 20), "bus": (235, 200, 30),
    "bus_window": (40, 70, 100), "bus_wheel": (20, 20, 20),
    "motorcycle": (30, 30, 200), "bicycle": (20, 200, 200), "static": (60, 140, 80),
    "ego": (30, 30, 35),
}
#: "Real look": muted colours with shifted hues (paler sky, warmer road, greyer sidewalk, duller
#: vegetation, brownish buildings). Half-way from the game palette to a fully "real" one: a full
#: swap made a small source-trained CNN fall to near chance (7 mIoU), too strong to adapt from.
REAL_PALETTE: dict[str, tuple[int, int, int]] = {
    "sky": (128, 180, 230), "road": (102, 98, 104), "lane": (228, 228, 222),
    "sidewalk": (178, 165, 148), "curb": (200, 196, 189), "parking": (112, 102, 108),
    "terrain": (138, 175, 68), "building": (178, 138, 105), "window": (68, 108, 155),
    "wall": (180, 175, 150), "fence": (142, 115, 80), "fence_bar": (90, 72, 55),
    "pole": (110, 110, 120), "light_box": (40, 40, 40), "lamp_red": (245, 60, 48),
    "lamp_green": (62, 240, 110), "sign": (70, 105, 190), "canopy": (52, 132, 42),
    "trunk": (98, 68, 38), "person": (152, 62, 78), "skin": (225, 178, 145),
    "rider": (172, 82, 58), "car": (160, 80, 84), "car_side": (130, 65, 69),
    "car_window": (35, 50, 70), "car_light": (228, 65, 50), "wheel": (25, 25, 25),
    "truck": (205, 202, 192), "truck_wheel": (25, 25, 25), "bus": (192, 188, 108),
    "bus_window": (42, 62, 80), "bus_wheel": (25, 25, 25), "motorcycle": (45, 45, 138),
    "bicycle": (45, 130, 128), "static": (75, 120, 85), "ego": (38, 38, 42),
}


@dataclass(frozen=True)
class DomainStyle:
    """Every knob of one domain: appearance (palette .. tint) and layout statistics (focal ..).

    The defaults are the source ("game") domain; :data:`TARGET_STYLE` is the full-strength target
    ("real") domain. Pixel-scale knobs (``blur_sigma``) are given for a 256-pixel-wide image and
    scale with the width. Counts are Poisson means per frame.
    """

    palette: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(GAME_PALETTE))
    saturation: float = 1.0  # chroma multiplier applied after the palette
    brightness: float = 1.0  # global exposure multiplier
    exposure_jitter: float = 0.0  # std of per-frame log exposure
    instance_lum: float = 25.0  # per-object brightness variation (cars, buildings, clothes)
    instance_chroma: float = 70.0  # per-object colour variation
    texture_noise: float = 0.0  # std (intensity units) of material texture, x material roughness
    sensor_noise: float = 0.0  # std (intensity units) of iid per-pixel noise
    blur_sigma: float = 0.0  # Gaussian blur sigma in pixels at width 256
    light_gradient: float = 0.0  # +- relative brightness of a random-direction lighting ramp
    vignette: float = 0.0  # relative darkening at the corners
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gain at full time-of-day strength
    focal: float = 1.0  # focal length / image width
    horizon: float = 0.44  # horizon row / image height
    horizon_jitter: float = 0.03  # std of the horizon row (fraction of height)
    road_width: float = 12.0  # metres
    sidewalk_width: float = 3.5  # metres
    building_height: tuple[float, float] = (6.0, 22.0)  # metres, uniform range
    setback_prob: float = 0.5  # chance of a terrain strip between sidewalk and facades, per side
    cars: float = 4.0
    large_vehicles: float = 0.35  # buses and trucks
    persons: float = 3.0
    riders: float = 0.8  # cyclists and motorcyclists on the road
    parked_bikes: float = 0.5
    trees: float = 4.0
    poles: float = 5.0
    statics: float = 1.0  # void "static" street furniture (bins)
    fence_prob: float = 0.4  # chance of a fence / wall / hedge run, per side
    parking_prob: float = 0.2  # chance of a parking strip (void id 9), per side
    ego_hood: float = 0.0  # height of the ego-vehicle hood (void id 1) / image height


#: Full-strength "real" target domain (shift = 1).
TARGET_STYLE = DomainStyle(
    palette=dict(REAL_PALETTE), saturation=0.85, brightness=0.95, exposure_jitter=0.1,
    instance_lum=40.0, instance_chroma=45.0, texture_noise=12.0, sensor_noise=5.0,
    blur_sigma=0.8, light_gradient=0.15, vignette=0.18, tint=(1.06, 0.98, 0.89), focal=1.1,
    horizon=0.38, road_width=9.0, sidewalk_width=3.0, building_height=(8.0, 28.0),
    setback_prob=0.3, cars=7.0, large_vehicles=0.5, persons=5.0, riders=1.0, parked_bikes=1.0,
    trees=6.0, poles=6.0, statics=1.5, fence_prob=0.5, parking_prob=0.3, ego_hood=0.07,
)


def interpolate_style(a: DomainStyle, b: DomainStyle, t: float) -> DomainStyle:
    """Field-wise ``a + t * (b - a)`` (palette per material and channel); ``t > 1`` extrapolates."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(DomainStyle):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, dict):
            values[f.name] = {k: tuple(float(x + t * (y - x)) for x, y in zip(va[k], vb[k]))
                              for k in va}
        elif isinstance(va, tuple):
            values[f.name] = tuple(float(x + t * (y - x)) for x, y in zip(va, vb))
        else:
            values[f.name] = float(va + t * (vb - va))
    return DomainStyle(**values)


def domain_styles(shift: float, source: DomainStyle | None = None,
                  target: DomainStyle | None = None) -> tuple[DomainStyle, DomainStyle]:
    """(source style, target style at ``shift``) -- the target is interpolated from the source."""
    source = source or DomainStyle()
    return source, interpolate_style(source, target or TARGET_STYLE, shift)


# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Camera:
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


class _Canvas:
    """Material map + per-pixel instance index; the label is derived from the material map."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.mat = np.full((height, width), _MAT["sky"], np.uint8)
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
            cv2.fillPoly(self.mat, polys, _MAT[material])
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
            self.mat[ya:yb, xa:xb] = _MAT[material]
            self.var[ya:yb, xa:xb] = inst

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, material: str, inst: int = 0,
                thickness: int = -1) -> None:
        """Filled (or outlined) axis-aligned ellipse, radii at least one pixel."""
        c = (int(round(cx)), int(round(cy)))
        axes = (max(int(round(ax)), 1), max(int(round(ay)), 1))
        if max(abs(c[0]), abs(c[1])) > 100000:
            return
        cv2.ellipse(self.mat, c, axes, 0, 0, 360, _MAT[material], thickness)
        cv2.ellipse(self.var, c, axes, 0, 0, 360, inst, thickness)

    def line(self, p0: Sequence[float], p1: Sequence[float], width: float, material: str,
             inst: int = 0) -> None:
        """Thick straight segment (at least one pixel)."""
        a = (int(round(p0[0])), int(round(p0[1])))
        b = (int(round(p1[0])), int(round(p1[1])))
        t = max(int(round(width)), 1)
        cv2.line(self.mat, a, b, _MAT[material], t)
        cv2.line(self.var, a, b, inst, t)


def _ground_quad(cam: _Camera, x0: Any, x1: Any, z0: Any, z1: Any, y: float = 0.0) -> np.ndarray:
    """Image polygon(s) of horizontal rectangles [x0, x1] x [z0, z1] at height y: (..., 4, 2)."""
    x0, x1, z0, z1 = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (x0, x1, z0, z1)))
    return cam.project(np.stack([x0, x1, x1, x0], -1), y, np.stack([z0, z0, z1, z1], -1))


def _side_quads(cam: _Camera, x: float, z0: np.ndarray, z1: np.ndarray, y0: np.ndarray,
                y1: np.ndarray) -> np.ndarray:
    """(n, 4, 2) image polygons of vertical rectangles in the plane X = x (facing the road)."""
    z = np.stack([z0, z0, z1, z1], -1)
    y = np.stack([y0, y1, y1, y0], -1)
    return cam.project(x, y, z)


def _front_quads(cam: _Camera, z: float, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray,
                 y1: np.ndarray) -> np.ndarray:
    """(n, 4, 2) image polygons of vertical rectangles in the plane Z = z (facing the camera)."""
    x = np.stack([x0, x0, x1, x1], -1)
    y = np.stack([y0, y1, y1, y0], -1)
    return cam.project(x, y, z)


def _window_grid(u0: float, u1: float, h: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, ...]:
    """Window rectangles (u0, u1, y0, y1) on a facade spanning [u0, u1] x [0, h] metres."""
    col_w, floor_h = rng.uniform(2.2, 3.2), rng.uniform(2.8, 3.6)
    win_w, win_h = col_w * rng.uniform(0.4, 0.65), floor_h * rng.uniform(0.4, 0.6)
    us = np.arange(u0 + col_w * 0.5, u1 - col_w * 0.5, col_w)
    ys = np.arange(floor_h * 0.9, h - floor_h * 0.8, floor_h)
    uu, yy = np.meshgrid(us, ys)
    uu, yy = uu.ravel(), yy.ravel()
    return uu - win_w / 2, uu + win_w / 2, yy, yy + win_h


# --------------------------------------------------------------------------------------------
# Scene: ground, buildings, street furniture, vehicles, people
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Street:
    """Per-frame street geometry in metres (camera at X = 0)."""

    road: tuple[float, float]  # X range of the road
    walk: tuple[float, float]  # sidewalk width left, right
    setback: tuple[float, float]  # terrain strip width left, right
    z_end: float  # depth of the far row of buildings

    def facade_x(self, side: int) -> float:
        """X of the building facades on side -1 (left) or +1 (right)."""
        i = 0 if side < 0 else 1
        edge = self.road[i] + side * self.walk[i]
        return edge + side * self.setback[i]

    def walk_x(self, side: int, frac: float) -> float:
        """X at fraction ``frac`` across the sidewalk of ``side`` (0 = curb, 1 = outer edge)."""
        i = 0 if side < 0 else 1
        return self.road[i] + side * frac * self.walk[i]


def _sample_street(style: DomainStyle, rng: np.random.Generator) -> _Street:
    road_w = max(style.road_width * rng.uniform(0.85, 1.15), 4.0)
    offset = rng.uniform(-0.3, 0.3) * road_w
    walk = tuple(max(style.sidewalk_width * rng.uniform(0.7, 1.3), 1.0) for _ in range(2))
    setback = tuple(rng.uniform(2.0, 7.0) if rng.random() < style.setback_prob else 0.0
                    for _ in range(2))
    return _Street(road=(offset - road_w / 2, offset + road_w / 2), walk=walk, setback=setback,
                   z_end=rng.uniform(70.0, 160.0))


def _draw_ground(cv: _Canvas, cam: _Camera, st: _Street, style: DomainStyle,
                 rng: np.random.Generator) -> None:
    """Terrain below the horizon, road, sidewalks with curbs, parking strips and lane markings."""
    h = cv.mat.shape[0]
    cv.mat[int(math.ceil(cam.cy)):h] = _MAT["terrain"]
    z0, z1 = 0.5, st.z_end
    (xl, xr), (wl, wr) = st.road, st.walk
    cv.polys([_ground_quad(cam, xl - wl, xl, z0, z1), _ground_quad(cam, xr, xr + wr, z0, z1)],
             "sidewalk")
    cv.polys([_ground_quad(cam, xl - 0.25, xl, z0, z1), _ground_quad(cam, xr, xr + 0.25, z0, z1)],
             "curb")
    cv.polys([_ground_quad(cam, xl, xr, z0, z1)], "road")
    for side, x_edge in ((-1, xl), (1, xr)):
        if rng.random() < style.parking_prob:
            za = rng.uniform(3.0, 25.0)
            x_in = x_edge - side * 2.3
            cv.polys([_ground_quad(cam, min(x_edge, x_in), max(x_edge, x_in), za,
                                   za + rng.uniform(10.0, 40.0))], "parking")
    period, dash = rng.uniform(7.0, 12.0), rng.uniform(2.0, 4.0)
    starts = np.arange(rng.uniform(0.5, period), z1, period)
    centre = (xl + xr) / 2 + rng.uniform(-0.5, 0.5)
    dashes = _ground_quad(cam, centre - 0.08, centre + 0.08, starts[:, None],
                          starts[:, None] + dash)
    edges = [_ground_quad(cam, x - 0.07, x + 0.07, z0, z1) for x in (xl + 0.4, xr - 0.4)]
    cv.polys(list(dashes) + edges, "lane")


def _draw_facade(cv: _Canvas, cam: _Camera, quad: np.ndarray, windows: np.ndarray | None,
                 rng: np.random.Generator) -> None:
    """One building facade polygon plus its window polygons."""
    inst = cv.instance()
    cv.polys([quad], "building", inst)
    if windows is not None and len(windows):
        cv.polys(windows, "window", cv.instance() if rng.random() < 0.5 else 0)


def _draw_far_row(cv: _Canvas, cam: _Camera, st: _Street, style: DomainStyle,
                  rng: np.random.Generator) -> None:
    """Buildings facing the camera at the end of the street (some gaps show the sky)."""
    w = cv.mat.shape[1]
    x = (-cam.cx / cam.f - 0.2) * st.z_end - rng.uniform(0.0, 20.0)
    x_end = ((w - cam.cx) / cam.f + 0.2) * st.z_end
    lo, hi = style.building_height
    while x < x_end:
        width = rng.uniform(8.0, 25.0)
        if rng.random() > 0.15:
            h = rng.uniform(lo, max(hi, lo + 1.0)) * 1.2
            quad = _front_quads(cam, st.z_end, np.array([x]), np.array([x + width]),
                                np.zeros(1), np.array([h]))[0]
            u0, u1, y0, y1 = _window_grid(x, x + width, h, rng)
            _draw_facade(cv, cam, quad, _front_quads(cam, st.z_end, u0, u1, y0, y1), rng)
        x += width


def _draw_side_buildings(cv: _Canvas, cam: _Camera, st: _Street, style: DomainStyle,
                         rng: np.random.Generator) -> None:
    """Rows of facades along both sides of the street, far to near, with window grids."""
    lo, hi = style.building_height
    for side in (-1, 1):
        x = st.facade_x(side)
        z, segs = rng.uniform(0.5, 6.0), []
        while z < st.z_end:
            length = rng.uniform(8.0, 30.0)
            if rng.random() > 0.12:
                segs.append((z, min(z + length, st.z_end), rng.uniform(lo, max(hi, lo + 1.0))))
            z += length + (rng.uniform(2.0, 8.0) if rng.random() < 0.2 else 0.0)
        for za, zb, h in reversed(segs):
            quad = _side_quads(cam, x, np.array([za]), np.array([zb]), np.zeros(1),
                               np.array([h]))[0]
            u0, u1, y0, y1 = _window_grid(za, zb, h, rng)
            _draw_facade(cv, cam, quad, _side_quads(cam, x, u0, u1, y0, y1), rng)


def _draw_runs(cv: _Canvas, cam: _Camera, st: _Street, style: DomainStyle,
               rng: np.random.Generator) -> None:
    """Fence, wall or hedge runs along the outer sidewalk edge."""
    for side in (-1, 1):
        if rng.random() >= style.fence_prob:
            continue
        x = st.walk_x(side, 1.0)
        za = rng.uniform(2.0, 20.0)
        zb = za + rng.uniform(8.0, 40.0)
        kind = rng.choice(["fence", "wall", "hedge"], p=[0.45, 0.35, 0.2])
        h = {"fence": rng.uniform(1.0, 1.6), "wall": rng.uniform(0.8, 2.4),
             "hedge": rng.uniform(0.8, 1.6)}[kind]
        mat = {"fence": "fence", "wall": "wall", "hedge": "canopy"}[kind]
        quad = _side_quads(cam, x, np.array([za]), np.array([zb]), np.zeros(1), np.array([h]))
        inst = cv.instance()
        cv.polys(quad, mat, inst)
        if kind == "fence":
            posts = np.arange(za, zb, rng.uniform(1.2, 2.5))
            bars = _side_quads(cam, x, posts, posts + 0.12, np.zeros_like(posts),
                               np.full_like(posts, h))
            rail = _side_quads(cam, x, np.array([za]), np.array([zb]), np.array([h - 0.1]),
                               np.array([h]))
            cv.polys(list(bars) + list(rail), "fence_bar", inst)


def _draw_tree(cv: _Canvas, cam: _Camera, x: float, z: float, rng: np.random.Generator) -> None:
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    trunk_h, r = rng.uniform(2.0, 4.0), rng.uniform(1.4, 3.2)
    cv.rect(px - 0.15 * s, py - (trunk_h + 0.5 * r) * s, px + 0.15 * s, py, "trunk")
    inst = cv.instance()
    cy = py - (trunk_h + 0.75 * r) * s
    cv.ellipse(px, cy, r * s, 0.85 * r * s, "canopy", inst)
    for _ in range(3):  # lumpy crown
        cv.ellipse(px + rng.uniform(-0.6, 0.6) * r * s, cy + rng.uniform(-0.5, 0.2) * r * s,
                   0.55 * r * s, 0.5 * r * s, "canopy", inst)


def _draw_pole(cv: _Canvas, cam: _Camera, x: float, z: float, side: int,
               rng: np.random.Generator) -> None:
    """Pole with (maybe) a traffic sign, a traffic light on an arm, or a street lamp."""
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    kind = rng.choice(["sign", "light", "lamp", "plain"], p=[0.4, 0.3, 0.2, 0.1])
    h = rng.uniform(2.8, 3.6) if kind == "sign" else rng.uniform(4.0, 7.0)
    cv.rect(px - 0.09 * s, py - h * s, px + 0.09 * s, py, "pole")
    if kind == "sign":
        inst, size = cv.instance(), rng.uniform(0.5, 0.8) * s
        cy = py - (h - 0.3) * s
        shape = rng.integers(3)
        if shape == 0:
            cv.rect(px - size / 2, cy - size / 2, px + size / 2, cy + size / 2, "sign", inst)
        elif shape == 1:
            cv.ellipse(px, cy, size / 2, size / 2, "sign", inst)
        else:
            tri = np.array([[px - size / 2, cy - size / 2], [px + size / 2, cy - size / 2],
                            [px, cy + size / 2]])
            cv.polys([tri], "sign", inst)
    elif kind in ("light", "lamp"):
        arm = rng.uniform(1.5, 4.0) * s * -side
        y_arm = py - h * s
        cv.line((px, y_arm), (px + arm, y_arm), 0.12 * s, "pole")
        if kind == "lamp":
            cv.rect(px + arm - 0.3 * s, y_arm, px + arm + 0.3 * s, y_arm + 0.15 * s, "pole")
        else:
            _draw_light_box(cv, px + arm, y_arm, s, rng)


def _draw_light_box(cv: _Canvas, cx: float, top: float, s: float,
                    rng: np.random.Generator) -> None:
    """Traffic light housing hanging below (cx, top) with one lit lamp."""
    w, hgt = 0.35 * s, 0.95 * s
    cv.rect(cx - w / 2, top, cx + w / 2, top + hgt, "light_box")
    lit = rng.integers(3)
    cy = top + hgt * (0.2 + 0.3 * lit)
    cv.ellipse(cx, cy, 0.11 * s, 0.11 * s, "lamp_red" if lit == 0 else "lamp_green")


def _draw_car(cv: _Canvas, cam: _Camera, x: float, z: float, rng: np.random.Generator) -> None:
    """A car seen from behind (rear face at depth z), with its near side face when visible."""
    w, h, ln = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.65), rng.uniform(3.9, 4.9)
    yb, belt = 0.28, 0.5 * h + 0.15
    inst = cv.instance()
    xs = x + w / 2 if x < -w / 2 else x - w / 2 if x > w / 2 else None
    if xs is not None:
        body = _side_quads(cam, xs, np.array([z]), np.array([z + ln]), np.array([yb]),
                           np.array([belt]))
        cabin = cam.project(xs, np.array([belt, h, h, belt]),
                            z + ln * np.array([0.15, 0.3, 0.7, 0.85]))
        cv.polys([body[0], cabin], "car_side", inst)
        cv.polys([cam.project(xs, np.array([belt + 0.05, h - 0.07, h - 0.07, belt + 0.05]),
                              z + ln * np.array([0.2, 0.32, 0.68, 0.8]))], "car_window")
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        wheels = [cam.project(xs, 0.33 + 0.33 * np.sin(t), zc + 0.33 * np.cos(t))
                  for zc in (z + 0.18 * ln, z + 0.82 * ln)]
        cv.polys(wheels, "wheel")
    roof = _ground_quad(cam, x - 0.35 * w, x + 0.35 * w, z + 0.15 * ln, z + 0.7 * ln, y=h)
    cabin = cam.project(x + w / 2 * np.array([-0.9, -0.7, 0.7, 0.9]),
                        np.array([belt, h, h, belt]), z + 0.15 * ln)
    cv.polys([roof, cabin], "car", inst)
    cv.polys([cam.project(x + w / 2 * np.array([-0.78, -0.64, 0.64, 0.78]),
                          np.array([belt + 0.05, h - 0.06, h - 0.06, belt + 0.05]),
                          z + 0.15 * ln)], "car_window")
    cv.polys(_front_quads(cam, z, np.array([x - w / 2]), np.array([x + w / 2]), np.array([yb]),
                          np.array([belt])), "car", inst)
    cv.polys(_front_quads(cam, z, x + np.array([-w / 2, w / 2 - 0.3]),
                          x + np.array([-w / 2 + 0.3, w / 2]), np.full(2, belt - 0.2),
                          np.full(2, belt - 0.05)), "car_light")
    cv.polys(_front_quads(cam, z + 0.3, x + np.array([-w / 2 + 0.05, w / 2 - 0.3]),
                          x + np.array([-w / 2 + 0.3, w / 2 - 0.05]), np.zeros(2),
                          np.full(2, yb + 0.05)), "wheel")


def _draw_large_vehicle(cv: _Canvas, cam: _Camera, x: float, z: float,
                        rng: np.random.Generator) -> None:
    """A bus (window band) or a box truck, seen from behind, with its near side face."""
    kind = "bus" if rng.random() < 0.5 else "truck"
    w, h, ln = 2.5, rng.uniform(3.0, 3.6), rng.uniform(8.0, 12.0)
    inst = cv.instance()
    xs = x + w / 2 if x < -w / 2 else x - w / 2 if x > w / 2 else None
    if xs is not None:
        cv.polys(_side_quads(cam, xs, np.array([z]), np.array([z + ln]), np.array([0.35]),
                             np.array([h])), kind, inst)
        if kind == "bus":
            cv.polys(_side_quads(cam, xs, np.array([z + 0.5]), np.array([z + ln - 0.5]),
                                 np.array([h * 0.5]), np.array([h * 0.85])), "bus_window")
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        wheels = [cam.project(xs, 0.5 + 0.5 * np.sin(t), zc + 0.5 * np.cos(t))
                  for zc in (z + 0.2 * ln, z + 0.8 * ln)]
        cv.polys(wheels, f"{kind}_wheel")
    cv.polys(_front_quads(cam, z, np.array([x - w / 2]), np.array([x + w / 2]),
                          np.array([0.35]), np.array([h])), kind, inst)
    if kind == "bus":
        cv.polys(_front_quads(cam, z, np.array([x - 0.4 * w]), np.array([x + 0.4 * w]),
                              np.array([h * 0.55]), np.array([h * 0.9])), "bus_window")
    else:
        cv.polys(_front_quads(cam, z, np.array([x - 0.02]), np.array([x + 0.02]),
                              np.array([0.5]), np.array([h - 0.1])), "truck", 0)


def _draw_person(cv: _Canvas, cam: _Camera, x: float, z: float, rng: np.random.Generator) -> None:
    """Pedestrian silhouette: legs, torso, arms (clothes) and a head (skin)."""
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    hgt = rng.uniform(1.55, 1.95) * s
    inst = cv.instance()
    stride = rng.uniform(0.0, 0.12) * hgt
    hip, shoulder = py - 0.48 * hgt, py - 0.82 * hgt
    for dx in (-stride, stride):
        cv.line((px + 0.04 * hgt * np.sign(dx), hip), (px + dx, py), 0.09 * hgt, "person", inst)
    cv.polys([np.array([[px - 0.12 * hgt, hip], [px - 0.14 * hgt, shoulder],
                        [px + 0.14 * hgt, shoulder], [px + 0.12 * hgt, hip]])], "person", inst)
    for sgn in (-1, 1):
        cv.line((px + sgn * 0.15 * hgt, shoulder), (px + sgn * 0.18 * hgt, hip + 0.05 * hgt),
                0.06 * hgt, "person", inst)
    cv.ellipse(px, py - 0.9 * hgt, 0.07 * hgt, 0.085 * hgt, "skin")


def _draw_bike(cv: _Canvas, cam: _Camera, x: float, z: float, rng: np.random.Generator,
               ridden: bool) -> None:
    """Side-on bicycle or motorcycle, optionally with a rider (rider class) on it."""
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    motor = ridden and rng.random() < 0.35
    mat = "motorcycle" if motor else "bicycle"
    inst, r = cv.instance(), (0.32 if motor else 0.34) * s
    facing = 1 if rng.random() < 0.5 else -1
    back, front = (px - facing * 0.55 * s, py - r), (px + facing * 0.55 * s, py - r)
    for c in (back, front):
        cv.ellipse(c[0], c[1], r, r, mat, inst, thickness=max(int(round(0.08 * s)), 1))
    seat = (px - facing * 0.1 * s, py - 0.95 * s)
    bar = (px + facing * 0.45 * s, py - 1.05 * s)
    for a, b in ((back, seat), (seat, front), (front, bar), (back, (px, py - r)),
                 ((px, py - r), seat)):
        cv.line(a, b, 0.05 * s, mat, inst)
    if motor:
        cv.ellipse(px, py - 0.65 * s, 0.5 * s, 0.22 * s, mat, inst)
    if ridden:
        _draw_rider(cv, s, seat, bar, (px, py - r), facing)


def _draw_rider(cv: _Canvas, s: float, seat: tuple[float, float], bar: tuple[float, float],
                crank: tuple[float, float], facing: int) -> None:
    """Seated rider (rider class): legs to the crank, leaning torso, arm to the handlebar, head."""
    inst = cv.instance()
    shoulder = (seat[0] + facing * 0.28 * s, seat[1] - 0.55 * s)
    knee = (seat[0] + facing * 0.32 * s, seat[1] + 0.2 * s)
    cv.line(seat, knee, 0.14 * s, "rider", inst)
    cv.line(knee, crank, 0.11 * s, "rider", inst)
    cv.line(seat, shoulder, 0.3 * s, "rider", inst)
    cv.line(shoulder, bar, 0.08 * s, "rider", inst)
    cv.ellipse(shoulder[0] + facing * 0.08 * s, shoulder[1] - 0.22 * s, 0.11 * s, 0.13 * s,
               "rider", inst)


def _street_objects(cam: _Camera, st: _Street, style: DomainStyle,
                    rng: np.random.Generator) -> list[tuple[float, Callable[[_Canvas], None]]]:
    """(depth, draw function) for every object standing on the street."""
    objs: list[tuple[float, Callable[[_Canvas], None]]] = []
    z_max = max(min(st.z_end - 5.0, 90.0), 10.0)

    def add(z: float, fn: Callable[..., None], *args: Any) -> None:
        objs.append((z, lambda cv: fn(cv, cam, *args)))

    (xl, xr), lanes = st.road, []
    for _ in range(rng.poisson(max(style.cars, 0.0))):
        lane = rng.choice(["with", "against", "park_l", "park_r"], p=[0.35, 0.25, 0.2, 0.2])
        x = {"with": xr - (xr - xl) / 4, "against": xl + (xr - xl) / 4,
             "park_l": xl + 1.2, "park_r": xr - 1.2}[lane] + rng.uniform(-0.3, 0.3)
        z = rng.uniform(4.0, z_max)
        if all(abs(z - z2) > 6.0 for ln2, z2 in lanes if ln2 == lane):
            lanes.append((lane, z))
            add(z, _draw_car, x, z, rng)
    for _ in range(rng.poisson(max(style.large_vehicles, 0.0))):
        z = rng.uniform(12.0, z_max)
        add(z, _draw_large_vehicle, xr - (xr - xl) / 4 + rng.uniform(-0.3, 0.3), z, rng)
    for _ in range(rng.poisson(max(style.riders, 0.0))):
        z = rng.uniform(7.0, min(z_max, 45.0))
        x = (xr - 1.0) if rng.random() < 0.6 else (xl + 1.0)
        add(z, _draw_bike, x, z, rng, True)
    _walk_objects(cam, st, style, rng, z_max, add)
    return objs


def _walk_objects(cam: _Camera, st: _Street, style: DomainStyle, rng: np.random.Generator,
                  z_max: float, add: Callable[..., None]) -> None:
    """Pedestrians, parked bikes, bins, poles and trees on the sidewalks."""
    def spot(lo: float, hi: float, z_lo: float = 3.0) -> tuple[float, float, int]:
        side = -1 if rng.random() < 0.5 else 1
        return st.walk_x(side, rng.uniform(lo, hi)), rng.uniform(z_lo, z_max), side

    for _ in range(rng.poisson(max(style.persons, 0.0))):
        x, z, _s = spot(0.2, 0.9, 4.0)
        add(z, _draw_person, x, z, rng)
    for _ in range(rng.poisson(max(style.parked_bikes, 0.0))):
        x, z, _s = spot(0.2, 0.6, 5.0)
        add(z, _draw_bike, x, z, rng, False)
    for _ in range(rng.poisson(max(style.statics, 0.0))):
        x, z, _s = spot(0.3, 0.9, 4.0)
        add(z, _draw_bin, x, z, rng)
    for _ in range(rng.poisson(max(style.poles, 0.0))):
        x, z, side = spot(0.1, 0.15, 4.0)
        add(z, _draw_pole, x, z, side, rng)
    for _ in range(rng.poisson(max(style.trees, 0.0))):
        side = -1 if rng.random() < 0.5 else 1
        i = 0 if side < 0 else 1
        if st.setback[i] > 0:
            x = st.facade_x(side) - side * st.setback[i] * rng.uniform(0.3, 0.7)
        else:
            x = st.walk_x(side, rng.uniform(0.6, 0.8))
        z = rng.uniform(4.0, z_max)
        add(z + (1000.0 if st.setback[i] > 0 else 0.0), _draw_tree, x, z, rng)


def _draw_bin(cv: _Canvas, cam: _Camera, x: float, z: float, rng: np.random.Generator) -> None:
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    w, h = rng.uniform(0.4, 0.7) * s, rng.uniform(0.7, 1.1) * s
    cv.rect(px - w / 2, py - h, px + w / 2, py, "static", cv.instance())


def _draw_ego(cv: _Canvas, style: DomainStyle) -> None:
    """Ego-vehicle hood at the bottom of the frame (void id 1), as in Cityscapes."""
    h, w = cv.mat.shape
    top = style.ego_hood * h
    if top >= 1.0:
        cv.ellipse(w / 2, h + 2.0 * top, 0.75 * w, 3.0 * top, "ego")


def _draw_scene(cv: _Canvas, style: DomainStyle, rng: np.random.Generator) -> None:
    """Sample a street and paint it far to near into the canvas."""
    h, w = cv.mat.shape
    cy = h * (style.horizon + rng.normal(0.0, style.horizon_jitter))
    cam = _Camera(f=w * style.focal, cx=w * (0.5 + rng.normal(0.0, 0.04)),
                  cy=float(np.clip(cy, 0.15 * h, 0.75 * h)), height=rng.uniform(1.4, 1.8))
    st = _sample_street(style, rng)
    _draw_ground(cv, cam, st, style, rng)
    _draw_far_row(cv, cam, st, style, rng)
    _draw_side_buildings(cv, cam, st, style, rng)
    objs = _street_objects(cam, st, style, rng)
    for _z, fn in sorted((o for o in objs if o[0] >= 1000.0), key=lambda o: -o[0]):
        fn(cv)  # trees in the terrain strips stand behind fences
    _draw_runs(cv, cam, st, style, rng)
    for _z, fn in sorted((o for o in objs if o[0] < 1000.0), key=lambda o: -o[0]):
        fn(cv)
    _draw_ego(cv, style)


# --------------------------------------------------------------------------------------------
# Rendering: materials -> RGB in a domain style
# --------------------------------------------------------------------------------------------
def _colour_table(cv: _Canvas, style: DomainStyle) -> np.ndarray:
    """(materials * 256, 3) colour of every (material, instance) pair, saturation applied."""
    pal = np.array([style.palette[m[0]] for m in _MATERIALS], np.float32)
    vecs = np.zeros((256, 4), np.float32)
    vecs[: len(cv.vecs)] = cv.vecs
    var = style.instance_lum * vecs[:, :1] + style.instance_chroma * vecs[:, 1:]
    table = pal[:, None, :] + _MAT_GAIN[:, None, None] * var[None]
    gray = table.mean(-1, keepdims=True)
    return (gray + style.saturation * (table - gray)).reshape(-1, 3)


@functools.lru_cache(maxsize=8)
def _unit_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5): (y, x), each (h, w) float32."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5


def _render(cv: _Canvas, style: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """Paint the material map in ``style``: palette, instance colours, texture, light, noise."""
    h, w = cv.mat.shape
    img = _colour_table(cv, style)[cv.mat.astype(np.intp) * 256 + cv.var]
    img = img.reshape(h, w, 3)
    if style.texture_noise > 0:
        low = cv2.resize(rng.standard_normal((h // 8 + 2, w // 8 + 2), dtype=np.float32),
                         (w, h), interpolation=cv2.INTER_CUBIC)
        field_ = 0.6 * low + 0.8 * rng.standard_normal((h, w), dtype=np.float32)
        img += (style.texture_noise * _MAT_ROUGH[cv.mat] * field_)[..., None]
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


_DOMAIN_CODE = {"source": 0, "target": 1}
_SPLIT_CODE = {"train": 0, "val": 1}


def generate_frame(seed: int, domain: str, split: str, index: int, width: int, height: int,
                   style: DomainStyle) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, Cityscapes-id uint8 label) pair seeded by (seed, domain, split, index).

    Layout and rendering use separate child streams, so appearance knobs never move the layout.
    """
    rng = np.random.default_rng([seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], index])
    layout_rng, render_rng = rng.spawn(2)
    cv = _Canvas(width, height, layout_rng)
    _draw_scene(cv, style, layout_rng)
    return _render(cv, style, render_rng), _MAT_CLASS[cv.mat]


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


def _write_job(args: tuple[str, _Job, int, int, int, DomainStyle]) -> np.ndarray:
    """Generate and write one frame; return its 256-bin label histogram."""
    root, job, seed, width, height, style = args
    img, lab = generate_frame(seed, job.domain, job.split, job.index, width, height, style)
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
    if width < 32 or height < 32:
        raise StvmError(None, f"image size must be at least 32x32, got {width}x{height}")
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
                target_style: DomainStyle | None = None) -> dict:
    """Write the synthetic benchmark to ``out`` (source/ as GTA5, target/ as Cityscapes).

    ``target_style`` is the full-strength target (default :data:`TARGET_STYLE`); the target
    domain actually written is ``interpolate_style(source, target, shift)``. Writes atomically
    (temporary sibling directory, then rename) and refuses a non-empty ``out``. Returns the
    summary also written to ``out/synth.json``. Output does not depend on ``workers``.
    """
    out = Path(out)
    _check_args(out, (n_source, n_target_train, n_target_val), width, height, seed, shift, workers)
    src, tgt = domain_styles(shift, source_style, target_style)
    jobs = _jobs(n_source, n_target_train, n_target_val)
    hist = {k: np.zeros(256, np.int64) for k in ("source", "target_train", "target_val")}
    with atomic_dir(out, overwrite=out.exists()) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the dataset is meant to be shared
        args = [(str(tmp), j, seed, width, height, src if j.domain == "source" else tgt)
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
        write_json(tmp / "synth.json", summary)
    return summary


def _summary(seed: int, width: int, height: int, shift: float, jobs: list[_Job],
             src: DomainStyle, tgt: DomainStyle, hist: dict[str, np.ndarray]) -> dict:
    counts = {k: sum(1 for j in jobs if (j.domain if j.domain == "source"
                                         else f"target_{j.split}") == k) for k in hist}
    summary = {
        "generator": "stvm.data.synth", "version": 1, "seed": seed, "width": width,
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
