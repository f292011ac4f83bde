"""Qualitative panel: target val image, ground truth, Source and adapted predictions, reliability and confidence.

For each image whose maps the evaluate stage wrote (``evaluate.maps``: the first N target val images
by name; ``stvm.evaluate.maps``), one row of tiles side by side:
image | ground truth | Source prediction | adapted prediction | reliability | teacher confidence.
Labels are colourised with the Cityscapes palette, the maps drawn in viridis. Every tile is read
from a file (the prepared val image and label, the evaluations' ``maps/``): the report rebuilds no
network. Without a mean teacher the adapted network's own confidence is shown and the column says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stvm.data.images import read_label, read_rgb
from stvm.data.labels import colorize, protocol_class_names, protocol_lut, protocol_palette
from stvm.errors import StvmError
from stvm.io import read_json
from stvm.report.figures import BLACK, FONT, GREY

HEADER = 28  # height of the column-title bar, pixels


def heat_u8(u8: np.ndarray) -> np.ndarray:
    """An 8-bit map (0..255 for 0..1) -> RGB with the viridis colour map."""
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def heat(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB with the viridis colour map."""
    return heat_u8(np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8))


def read_maps_index(eval_dir: Path) -> dict[str, Any]:
    """What an evaluation wrote under ``maps/`` (its ``index.json``), checked."""
    path = eval_dir / "maps" / "index.json"
    if not path.is_file():
        raise StvmError(path, "no maps index: the evaluation predates maps/ (run its evaluate stage again)")
    index = read_json(path)
    if not isinstance(index, dict) or not isinstance(index.get("images"), list):
        raise StvmError(path, "not an stvm maps index (no 'images' list)")
    return index


def _map(eval_dir: Path, stem: str, kind: str) -> np.ndarray:
    return read_label(eval_dir / "maps" / f"{stem}_{kind}.png")  # single-channel 8-bit PNG, errors name it


def _label_tiles(protocol: int, label_path: Path, size: tuple[int, int]) -> np.ndarray:
    """Ground truth in ``protocol`` indices, resized (nearest) to ``size`` and colourised."""
    lab = protocol_lut(protocol)[read_label(label_path)]
    lab = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
    return colorize(lab, protocol)


def panel_row(image: Path, label: Path, stem: str, source: tuple[Path, dict], adapted: tuple[Path, dict] | None,
              protocol: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The tiles of one image (all RGB at ``size`` = (W, H)); ``source``/``adapted`` are
    (evaluation folder, its maps index)."""
    rgb = read_rgb(image)
    if rgb.shape[1::-1] != tuple(size):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    tiles = [rgb, _label_tiles(protocol, label, size), colorize(_map(source[0], stem, "prediction"), protocol)]
    last = adapted or source
    if adapted is not None:
        tiles.append(colorize(_map(adapted[0], stem, "prediction"), protocol))
    if last[1].get("reliability"):
        tiles.append(heat_u8(_map(last[0], stem, "reliability")))
    tiles.append(heat_u8(_map(last[0], stem, "confidence")))
    return tiles


def column_titles(adapted_name: str | None, adapted: dict | None, source: dict) -> list[str]:
    """Titles matching ``panel_row``'s tiles (``adapted``/``source``: the maps indexes)."""
    last, name = (adapted, adapted_name) if adapted is not None else (source, "Source")
    titles = ["target image", "ground truth", "Source"] + ([adapted_name] if adapted is not None else [])
    if last.get("reliability"):
        titles.append(f"reliability w ({name})")
    titles.append(f"teacher confidence ({name})" if last.get("confidence_of") == "teacher" else f"confidence ({name})")
    return titles


def _title(tile_w: int, text: str) -> np.ndarray:
    bar = np.full((HEADER, tile_w, 3), 255, np.uint8)
    scale = 0.45
    while cv2.getTextSize(text, FONT, scale, 1)[0][0] > tile_w - 6 and scale > 0.25:
        scale -= 0.02
    tw = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    cv2.putText(bar, text, ((tile_w - tw) // 2, HEADER - 9), FONT, scale, BLACK, 1, cv2.LINE_AA)
    return bar


def compose(rows: list[list[np.ndarray]], titles: list[str], tile_w: int, protocol: int) -> np.ndarray:
    """Grid of tiles (each resized to ``tile_w`` wide), a title bar, a class legend and a colour bar."""
    gap = 4
    h, w = rows[0][0].shape[:2]
    tile_h = max(1, round(tile_w * h / w))
    width = len(titles) * tile_w + (len(titles) - 1) * gap

    def fit(t: np.ndarray) -> np.ndarray:
        return cv2.resize(t, (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)

    def strip(tiles: list[np.ndarray]) -> np.ndarray:
        sep = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
        return np.concatenate([p for t in tiles for p in (t, sep)][:-1], axis=1)

    parts = [strip([_title(tile_w, t) for t in titles])]
    for r in rows:
        parts += [strip([fit(t) for t in r]), np.full((gap, width, 3), 255, np.uint8)]
    parts += [_class_legend(protocol, width), _colour_bar(width)]
    return np.concatenate(parts, axis=0)


def _class_legend(protocol: int, width: int) -> np.ndarray:
    """Colour swatches with class names, wrapped to ``width``."""
    names, colours = protocol_class_names(protocol), protocol_palette(protocol)
    cell, row_h = 120, 20
    per_row = max(1, width // cell)
    out = np.full((row_h * (-(-len(names) // per_row)) + 6, width, 3), 255, np.uint8)
    for i, (name, col) in enumerate(zip(names, colours, strict=True)):
        x, y = (i % per_row) * cell + 4, (i // per_row) * row_h + 6
        cv2.rectangle(out, (x, y), (x + 14, y + 12), tuple(int(c) for c in col), -1)
        cv2.putText(out, name, (x + 18, y + 11), FONT, 0.38, BLACK, 1, cv2.LINE_AA)
    return out


def _colour_bar(width: int) -> np.ndarray:
    """The viridis scale of the reliability and confidence maps, 0 to 1."""
    out = np.full((34, width, 3), 255, np.uint8)
    bar_w = min(300, width - 120)
    out[6:18, 60: 60 + bar_w] = heat(np.linspace(0.0, 1.0, bar_w)[None].repeat(12, 0))
    cv2.putText(out, "0", (46, 17), FONT, 0.38, GREY, 1, cv2.LINE_AA)
    cv2.putText(out, "1  (reliability / confidence)", (66 + bar_w, 17), FONT, 0.38, GREY, 1, cv2.LINE_AA)
    return out


def qualitative_panel(images: Path, labels: Path, source_eval: Path, adapted_eval: Path | None,
                      adapted_name: str | None, protocol: int, tile_w: int) -> tuple[np.ndarray, list[str], tuple[int, int]] | None:
    """The panel image of the images whose maps the evaluations wrote, the image names and the size
    they were drawn at; None when the evaluations wrote no maps (``evaluate.maps`` 0)."""
    source = (source_eval, read_maps_index(source_eval))
    adapted = (adapted_eval, read_maps_index(adapted_eval)) if adapted_eval is not None else None
    stems = [str(s) for s in source[1]["images"]]
    if not stems:
        return None
    size = tuple(int(v) for v in source[1].get("input_size", ()))
    if len(size) != 2:
        raise StvmError(source_eval / "maps" / "index.json", "no input_size [width, height]")
    rows = [panel_row(images / f"{s}.png", labels / f"{s}.png", s, source, adapted, protocol, size) for s in stems]
    titles = column_titles(adapted_name, adapted[1] if adapted else None, source[1])
    return compose(rows, titles, tile_w, protocol), stems, size
