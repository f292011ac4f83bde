"""Scene geometry of the synthetic benchmark: a street seen by a pinhole camera, painted as materials.

Why apart from the style and the renderer: the scene decides *what* is where (the label), the style
*how big and how many*; rendering (``synth_render``) decides how it looks. Every pixel is painted as a
material of :data:`~stvm.data.synth_style.MATERIALS`; the label is the material's Cityscapes id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stvm.data.synth_canvas import Camera, Canvas, front_quads, ground_quad, side_quads, window_grid
from stvm.data.synth_objects import (draw_bike, draw_bin, draw_car, draw_large_vehicle, draw_person,
                                     draw_pole, draw_tree)
from stvm.data.synth_style import MAT, DomainStyle

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


def _draw_ground(cv: Canvas, cam: Camera, st: _Street, style: DomainStyle,
                 rng: np.random.Generator) -> None:
    """Terrain below the horizon, road, sidewalks with curbs, parking strips and lane markings."""
    h = cv.mat.shape[0]
    cv.mat[int(math.ceil(cam.cy)):h] = MAT["terrain"]
    z0, z1 = 0.5, st.z_end
    (xl, xr), (wl, wr) = st.road, st.walk
    cv.polys([ground_quad(cam, xl - wl, xl, z0, z1), ground_quad(cam, xr, xr + wr, z0, z1)],
             "sidewalk")
    cv.polys([ground_quad(cam, xl - 0.25, xl, z0, z1), ground_quad(cam, xr, xr + 0.25, z0, z1)],
             "curb")
    cv.polys([ground_quad(cam, xl, xr, z0, z1)], "road")
    for side, x_edge in ((-1, xl), (1, xr)):
        if rng.random() < style.parking_prob:
            za = rng.uniform(3.0, 25.0)
            x_in = x_edge - side * 2.3
            cv.polys([ground_quad(cam, min(x_edge, x_in), max(x_edge, x_in), za,
                                   za + rng.uniform(10.0, 40.0))], "parking")
    period, dash = rng.uniform(7.0, 12.0), rng.uniform(2.0, 4.0)
    starts = np.arange(rng.uniform(0.5, period), z1, period)
    centre = (xl + xr) / 2 + rng.uniform(-0.5, 0.5)
    dashes = ground_quad(cam, centre - 0.08, centre + 0.08, starts[:, None],
                          starts[:, None] + dash)
    edges = [ground_quad(cam, x - 0.07, x + 0.07, z0, z1) for x in (xl + 0.4, xr - 0.4)]
    cv.polys(list(dashes) + edges, "lane")


def _draw_facade(cv: Canvas, cam: Camera, quad: np.ndarray, windows: np.ndarray | None,
                 rng: np.random.Generator) -> None:
    """One building facade polygon plus its window polygons."""
    inst = cv.instance()
    cv.polys([quad], "building", inst)
    if windows is not None and len(windows):
        cv.polys(windows, "window", cv.instance() if rng.random() < 0.5 else 0)


def _draw_far_row(cv: Canvas, cam: Camera, st: _Street, style: DomainStyle,
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
            quad = front_quads(cam, st.z_end, np.array([x]), np.array([x + width]),
                                np.zeros(1), np.array([h]))[0]
            u0, u1, y0, y1 = window_grid(x, x + width, h, rng)
            _draw_facade(cv, cam, quad, front_quads(cam, st.z_end, u0, u1, y0, y1), rng)
        x += width


def _draw_side_buildings(cv: Canvas, cam: Camera, st: _Street, style: DomainStyle,
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
            quad = side_quads(cam, x, np.array([za]), np.array([zb]), np.zeros(1),
                               np.array([h]))[0]
            u0, u1, y0, y1 = window_grid(za, zb, h, rng)
            _draw_facade(cv, cam, quad, side_quads(cam, x, u0, u1, y0, y1), rng)


def _draw_runs(cv: Canvas, cam: Camera, st: _Street, style: DomainStyle,
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
        quad = side_quads(cam, x, np.array([za]), np.array([zb]), np.zeros(1), np.array([h]))
        inst = cv.instance()
        cv.polys(quad, mat, inst)
        if kind == "fence":
            posts = np.arange(za, zb, rng.uniform(1.2, 2.5))
            bars = side_quads(cam, x, posts, posts + 0.12, np.zeros_like(posts),
                               np.full_like(posts, h))
            rail = side_quads(cam, x, np.array([za]), np.array([zb]), np.array([h - 0.1]),
                               np.array([h]))
            cv.polys(list(bars) + list(rail), "fence_bar", inst)


def _street_objects(cam: Camera, st: _Street, style: DomainStyle,
                    rng: np.random.Generator, small: float) -> list[tuple[float, Callable[[Canvas], None]]]:
    """(depth, draw function) for every object standing on the street."""
    objs: list[tuple[float, Callable[[Canvas], None]]] = []
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
            add(z, draw_car, x, z, rng, style.object_scale, style.vehicle_height)
    for _ in range(rng.poisson(max(style.large_vehicles, 0.0))):
        z = rng.uniform(12.0, z_max)
        add(z, draw_large_vehicle, xr - (xr - xl) / 4 + rng.uniform(-0.3, 0.3), z, rng,
            style.object_scale, style.vehicle_height)
    for _ in range(rng.poisson(max(style.riders, 0.0))):
        z = rng.uniform(7.0, min(z_max, 45.0))
        x = (xr - 1.0) if rng.random() < 0.6 else (xl + 1.0)
        add(z, draw_bike, x, z, rng, True, small)
    _walk_objects(cam, st, style, rng, z_max, add, small)
    return objs


def _walk_objects(cam: Camera, st: _Street, style: DomainStyle, rng: np.random.Generator,
                  z_max: float, add: Callable[..., None], small: float) -> None:
    """Pedestrians, parked bikes, bins, poles and trees on the sidewalks."""
    def spot(lo: float, hi: float, z_lo: float = 3.0) -> tuple[float, float, int]:
        side = -1 if rng.random() < 0.5 else 1
        return st.walk_x(side, rng.uniform(lo, hi)), rng.uniform(z_lo, z_max), side

    for _ in range(rng.poisson(max(style.persons, 0.0))):
        x, z, _s = spot(0.2, 0.9, 4.0)
        add(z, draw_person, x, z, rng, small)
    for _ in range(rng.poisson(max(style.parked_bikes, 0.0))):
        x, z, _s = spot(0.2, 0.6, 5.0)
        add(z, draw_bike, x, z, rng, False, small)
    for _ in range(rng.poisson(max(style.statics, 0.0))):
        x, z, _s = spot(0.3, 0.9, 4.0)
        add(z, draw_bin, x, z, rng)
    for _ in range(rng.poisson(max(style.poles, 0.0))):
        x, z, side = spot(0.1, 0.15, 4.0)
        add(z, draw_pole, x, z, side, rng, small)
    for _ in range(rng.poisson(max(style.trees, 0.0))):
        side = -1 if rng.random() < 0.5 else 1
        i = 0 if side < 0 else 1
        if st.setback[i] > 0:
            x = st.facade_x(side) - side * st.setback[i] * rng.uniform(0.3, 0.7)
        else:
            x = st.walk_x(side, rng.uniform(0.6, 0.8))
        z = rng.uniform(4.0, z_max)
        add(z + (1000.0 if st.setback[i] > 0 else 0.0), draw_tree, x, z, rng)


def _draw_ego(cv: Canvas, style: DomainStyle) -> None:
    """Ego-vehicle hood at the bottom of the frame (void id 1), as in Cityscapes."""
    h, w = cv.mat.shape
    top = style.ego_hood * h
    if top >= 1.0:
        cv.ellipse(w / 2, h + 2.0 * top, 0.75 * w, 3.0 * top, "ego")


def draw_scene(cv: Canvas, style: DomainStyle, rng: np.random.Generator, object_size: float = 1.0) -> None:
    """Sample a street and paint it far to near into the canvas.

    ``object_size`` scales the small things (people, bikes, poles' widths, signs, lights) on top of
    the style's object scale: a frame property of both domains, not a shift.
    """
    h, w = cv.mat.shape
    cy = h * (style.horizon + rng.normal(0.0, style.horizon_jitter))
    cam = Camera(f=w * style.focal, cx=w * (0.5 + rng.normal(0.0, 0.04)),
                  cy=float(np.clip(cy, 0.15 * h, 0.75 * h)), height=rng.uniform(1.4, 1.8))
    st = _sample_street(style, rng)
    _draw_ground(cv, cam, st, style, rng)
    _draw_far_row(cv, cam, st, style, rng)
    _draw_side_buildings(cv, cam, st, style, rng)
    objs = _street_objects(cam, st, style, rng, style.object_scale * object_size)
    for _z, fn in sorted((o for o in objs if o[0] >= 1000.0), key=lambda o: -o[0]):
        fn(cv)  # trees in the terrain strips stand behind fences
    _draw_runs(cv, cam, st, style, rng)
    for _z, fn in sorted((o for o in objs if o[0] < 1000.0), key=lambda o: -o[0]):
        fn(cv)
    _draw_ego(cv, style)
