"""Domain styles of the synthetic benchmark: materials, palettes, and the shift as named parts.

Why: the domain gap must be a set of parts a reader can name and switch on one at a time (global
appearance, class-conditional appearance, texture, object shape, layout, sensor), so the benchmark
can say which part normalisation undoes and which it does not. :data:`PART_FIELDS` is the one
table of which :class:`DomainStyle` field belongs to which part; a part at strength ``s`` moves its
fields a fraction ``s`` of the way from the source style to :data:`TARGET_STYLE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Materials: (name, Cityscapes id, texture roughness, instance-colour gain).
# --------------------------------------------------------------------------------------------
MATERIALS: tuple[tuple[str, int, float, float], ...] = (
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
MAT = {name: i for i, (name, *_rest) in enumerate(MATERIALS)}
MAT_CLASS = np.zeros(256, np.uint8)
MAT_CLASS[: len(MATERIALS)] = [m[1] for m in MATERIALS]
MAT_ROUGH = np.array([m[2] for m in MATERIALS], np.float32)
MAT_GAIN = np.array([m[3] for m in MATERIALS], np.float32)

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



#: Class-conditional restyling of the target (part ``class_appearance``): each named material gets
#: its own look, unrelated to a global colour transform (grey and white cars, autumn vegetation,
#: pale concrete road, red-brick sidewalks, grey concrete facades, dark clothes, red buses).
CLASS_PALETTE: dict[str, tuple[int, int, int]] = {
    "car": (165, 165, 170), "car_side": (135, 135, 140), "canopy": (160, 115, 40),
    "trunk": (70, 60, 55), "terrain": (170, 150, 95), "road": (150, 146, 140),
    "sidewalk": (160, 75, 60), "curb": (120, 115, 110), "building": (140, 142, 148),
    "wall": (110, 95, 120), "person": (45, 50, 85), "rider": (60, 60, 60),
    "bus": (200, 55, 45), "truck": (70, 90, 130), "sign": (230, 230, 235),
    "pole": (60, 70, 60), "fence": (90, 110, 95), "bicycle": (200, 80, 160),
    "motorcycle": (180, 180, 60),
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
    class_restyle: float = 0.0  # fraction of the way to CLASS_PALETTE for the materials it names
    texture_pattern: float = 0.0  # amplitude (intensity units) of structured textures (bricks, tiles)
    object_scale: float = 1.0  # size of people, bikes, vehicles, signs, lights, pole widths
    vehicle_height: float = 1.0  # height multiplier of cars, buses and trucks (boxier vehicles)


#: Full-strength "real" target domain (shift = 1).
TARGET_STYLE = DomainStyle(
    palette=dict(REAL_PALETTE), saturation=0.85, brightness=0.95, exposure_jitter=0.1,
    instance_lum=40.0, instance_chroma=45.0, texture_noise=12.0, sensor_noise=5.0,
    blur_sigma=0.8, light_gradient=0.15, vignette=0.18, tint=(1.06, 0.98, 0.89), focal=1.1,
    horizon=0.38, road_width=9.0, sidewalk_width=3.0, building_height=(8.0, 28.0),
    setback_prob=0.3, cars=7.0, large_vehicles=0.5, persons=5.0, riders=1.0, parked_bikes=1.0,
    trees=6.0, poles=6.0, statics=1.5, fence_prob=0.5, parking_prob=0.3, ego_hood=0.07,
    class_restyle=1.0, texture_pattern=22.0, object_scale=0.8, vehicle_height=1.25,
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


#: Which DomainStyle fields make up each named part of the shift (every field in exactly one).
PART_FIELDS: dict[str, tuple[str, ...]] = {
    "appearance": ("palette", "saturation", "brightness", "exposure_jitter", "instance_lum",
                   "instance_chroma", "texture_noise", "tint", "light_gradient"),
    "class_appearance": ("class_restyle",),
    "texture": ("texture_pattern",),
    "shape": ("object_scale", "vehicle_height"),
    "layout": ("focal", "horizon", "horizon_jitter", "road_width", "sidewalk_width",
               "building_height", "setback_prob", "cars", "large_vehicles", "persons", "riders",
               "parked_bikes", "trees", "poles", "statics", "fence_prob", "parking_prob",
               "ego_hood"),
    "sensor": ("sensor_noise", "blur_sigma", "vignette"),
}
#: Strength of each part when a caller names none: the generator before the parts existed.
LEGACY_PARTS: dict[str, float] = {"appearance": 1.0, "class_appearance": 0.0, "texture": 0.0,
                                  "shape": 0.0, "layout": 1.0, "sensor": 1.0}


def domain_styles(shift: float, source: DomainStyle | None = None,
                  target: DomainStyle | None = None, parts: Mapping[str, float] | None = None,
                  ) -> tuple[DomainStyle, DomainStyle]:
    """(source style, target style): each part's fields moved ``shift * parts[part]`` of the way.

    ``parts=None`` is :data:`LEGACY_PARTS` (the generator before the parts existed).
    """
    parts = dict(LEGACY_PARTS if parts is None else parts)
    if set(parts) != set(PART_FIELDS):
        raise ValueError(f"parts must name exactly {sorted(PART_FIELDS)}, got {sorted(parts)}")
    source = source or DomainStyle()
    target = target or TARGET_STYLE
    values: dict[str, Any] = {}
    for part, names in PART_FIELDS.items():
        moved = interpolate_style(source, target, shift * parts[part])
        values.update({n: getattr(moved, n) for n in names})
    return source, DomainStyle(**values)
