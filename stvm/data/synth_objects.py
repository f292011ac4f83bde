"""Objects of the synthetic benchmark's streets: trees, poles with signs and lights, vehicles,
people, bikes with riders, bins. Each is drawn at a depth ``z``; ``k`` is the style's object scale.
"""

from __future__ import annotations

import numpy as np

from stvm.data.synth_canvas import Camera, Canvas, front_quads, ground_quad, side_quads

def draw_tree(cv: Canvas, cam: Camera, x: float, z: float, rng: np.random.Generator) -> None:
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    trunk_h, r = rng.uniform(2.0, 4.0), rng.uniform(1.4, 3.2)
    cv.rect(px - 0.15 * s, py - (trunk_h + 0.5 * r) * s, px + 0.15 * s, py, "trunk")
    inst = cv.instance()
    cy = py - (trunk_h + 0.75 * r) * s
    cv.ellipse(px, cy, r * s, 0.85 * r * s, "canopy", inst)
    for _ in range(3):  # lumpy crown
        cv.ellipse(px + rng.uniform(-0.6, 0.6) * r * s, cy + rng.uniform(-0.5, 0.2) * r * s,
                   0.55 * r * s, 0.5 * r * s, "canopy", inst)


def draw_pole(cv: Canvas, cam: Camera, x: float, z: float, side: int,
               rng: np.random.Generator, k: float = 1.0) -> None:
    """Pole with (maybe) a traffic sign, a traffic light on an arm, or a street lamp.

    ``k`` (object scale) sizes the pole's width, the sign, the arm and the light, not the heights.
    """
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    sk = s * k
    kind = rng.choice(["sign", "light", "lamp", "plain"], p=[0.4, 0.3, 0.2, 0.1])
    h = rng.uniform(2.8, 3.6) if kind == "sign" else rng.uniform(4.0, 7.0)
    cv.rect(px - 0.09 * sk, py - h * s, px + 0.09 * sk, py, "pole")
    if kind == "sign":
        inst, size = cv.instance(), rng.uniform(0.5, 0.8) * sk
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
        cv.line((px, y_arm), (px + arm, y_arm), 0.12 * sk, "pole")
        if kind == "lamp":
            cv.rect(px + arm - 0.3 * sk, y_arm, px + arm + 0.3 * sk, y_arm + 0.15 * sk, "pole")
        else:
            _draw_light_box(cv, px + arm, y_arm, sk, rng)


def _draw_light_box(cv: Canvas, cx: float, top: float, s: float,
                    rng: np.random.Generator) -> None:
    """Traffic light housing hanging below (cx, top) with one lit lamp."""
    w, hgt = 0.35 * s, 0.95 * s
    cv.rect(cx - w / 2, top, cx + w / 2, top + hgt, "light_box")
    lit = rng.integers(3)
    cy = top + hgt * (0.2 + 0.3 * lit)
    cv.ellipse(cx, cy, 0.11 * s, 0.11 * s, "lamp_red" if lit == 0 else "lamp_green")


def draw_car(cv: Canvas, cam: Camera, x: float, z: float, rng: np.random.Generator,
              k: float = 1.0, vh: float = 1.0) -> None:
    """A car seen from behind (rear face at depth z), with its near side face when visible.

    ``k`` scales its size, ``vh`` its height (boxier cars).
    """
    w, h, ln = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.65), rng.uniform(3.9, 4.9)
    w, h, ln = w * k, h * k * vh, ln * k
    yb, belt = 0.28, 0.5 * h + 0.15
    inst = cv.instance()
    xs = x + w / 2 if x < -w / 2 else x - w / 2 if x > w / 2 else None
    if xs is not None:
        body = side_quads(cam, xs, np.array([z]), np.array([z + ln]), np.array([yb]),
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
    roof = ground_quad(cam, x - 0.35 * w, x + 0.35 * w, z + 0.15 * ln, z + 0.7 * ln, y=h)
    cabin = cam.project(x + w / 2 * np.array([-0.9, -0.7, 0.7, 0.9]),
                        np.array([belt, h, h, belt]), z + 0.15 * ln)
    cv.polys([roof, cabin], "car", inst)
    cv.polys([cam.project(x + w / 2 * np.array([-0.78, -0.64, 0.64, 0.78]),
                          np.array([belt + 0.05, h - 0.06, h - 0.06, belt + 0.05]),
                          z + 0.15 * ln)], "car_window")
    cv.polys(front_quads(cam, z, np.array([x - w / 2]), np.array([x + w / 2]), np.array([yb]),
                          np.array([belt])), "car", inst)
    cv.polys(front_quads(cam, z, x + np.array([-w / 2, w / 2 - 0.3]),
                          x + np.array([-w / 2 + 0.3, w / 2]), np.full(2, belt - 0.2),
                          np.full(2, belt - 0.05)), "car_light")
    cv.polys(front_quads(cam, z + 0.3, x + np.array([-w / 2 + 0.05, w / 2 - 0.3]),
                          x + np.array([-w / 2 + 0.3, w / 2 - 0.05]), np.zeros(2),
                          np.full(2, yb + 0.05)), "wheel")


def draw_large_vehicle(cv: Canvas, cam: Camera, x: float, z: float,
                        rng: np.random.Generator, k: float = 1.0, vh: float = 1.0) -> None:
    """A bus (window band) or a box truck, seen from behind, with its near side face."""
    kind = "bus" if rng.random() < 0.5 else "truck"
    w, h, ln = 2.5, rng.uniform(3.0, 3.6), rng.uniform(8.0, 12.0)
    w, h, ln = w * k, h * k * vh, ln * k
    inst = cv.instance()
    xs = x + w / 2 if x < -w / 2 else x - w / 2 if x > w / 2 else None
    if xs is not None:
        cv.polys(side_quads(cam, xs, np.array([z]), np.array([z + ln]), np.array([0.35]),
                             np.array([h])), kind, inst)
        if kind == "bus":
            cv.polys(side_quads(cam, xs, np.array([z + 0.5]), np.array([z + ln - 0.5]),
                                 np.array([h * 0.5]), np.array([h * 0.85])), "bus_window")
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        wheels = [cam.project(xs, 0.5 + 0.5 * np.sin(t), zc + 0.5 * np.cos(t))
                  for zc in (z + 0.2 * ln, z + 0.8 * ln)]
        cv.polys(wheels, f"{kind}_wheel")
    cv.polys(front_quads(cam, z, np.array([x - w / 2]), np.array([x + w / 2]),
                          np.array([0.35]), np.array([h])), kind, inst)
    if kind == "bus":
        cv.polys(front_quads(cam, z, np.array([x - 0.4 * w]), np.array([x + 0.4 * w]),
                              np.array([h * 0.55]), np.array([h * 0.9])), "bus_window")
    else:
        cv.polys(front_quads(cam, z, np.array([x - 0.02]), np.array([x + 0.02]),
                              np.array([0.5]), np.array([h - 0.1])), "truck", 0)


def draw_person(cv: Canvas, cam: Camera, x: float, z: float, rng: np.random.Generator,
                 k: float = 1.0) -> None:
    """Pedestrian silhouette: legs, torso, arms (clothes) and a head (skin); ``k`` scales it."""
    (px, py), s = cam.project(x, 0.0, z), cam.f / z * k
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


def draw_bike(cv: Canvas, cam: Camera, x: float, z: float, rng: np.random.Generator,
               ridden: bool, k: float = 1.0) -> None:
    """Side-on bicycle or motorcycle, optionally with a rider (rider class) on it; ``k`` scales it."""
    (px, py), s = cam.project(x, 0.0, z), cam.f / z * k
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


def _draw_rider(cv: Canvas, s: float, seat: tuple[float, float], bar: tuple[float, float],
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


def draw_bin(cv: Canvas, cam: Camera, x: float, z: float, rng: np.random.Generator) -> None:
    (px, py), s = cam.project(x, 0.0, z), cam.f / z
    w, h = rng.uniform(0.4, 0.7) * s, rng.uniform(0.7, 1.1) * s
    cv.rect(px - w / 2, py - h, px + w / 2, py, "static", cv.instance())
