"""Qualitative panel: target val image, ground truth, every run's prediction, an error map, reliability and confidence.

For each image whose maps the evaluate stage wrote (``evaluate.maps``: the first N target val images
by name; ``stvm.evaluate.maps``), one row of tiles side by side:
image | ground truth | one prediction per run (Source first) | errors | reliability | teacher confidence,
the last three of one run (STvM when it ran). Labels are colourised with the Cityscapes palette,
the maps drawn in viridis. The error map marks that run's wrong pixels (ignore label excluded,
black) and, against Source, which errors are new and which Source made too. Every tile is read
from a file (the prepared val image and label, the evaluations' ``maps/``): the report rebuilds no
network. Without a mean teacher the adapted network's own confidence is shown and the column says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stvm.data.images import read_label, read_rgb
from stvm.data.labels import IGNORE, colorize, protocol_class_names, protocol_lut, protocol_palette
from stvm.errors import StvmError
from stvm.io import read_json
from stvm.report.figures import BLACK, FONT, GREY

HEADER = 28  # height of the column-title bar, pixels
# Error map colours, keyed by (this run wrong, Source wrong); ignore pixels stay black.
ERROR_COLOURS = {(False, False): (255, 255, 255), (True, True): (110, 110, 110), (True, False): (213, 94, 0),
                 (False, True): (0, 158, 115)}
ERROR_NAMES = {(False, False): "right", (True, True): "wrong, as Source", (True, False): "wrong, Source right",
               (False, True): "right, Source wrong"}


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


def _ground_truth(protocol: int, label_path: Path, size: tuple[int, int]) -> np.ndarray:
    """Ground truth in ``protocol`` indices (IGNORE outside the protocol), resized (nearest) to ``size``."""
    return cv2.resize(protocol_lut(protocol)[read_label(label_path)], size, interpolation=cv2.INTER_NEAREST)


def error_tile(gt: np.ndarray, pred: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Where ``pred`` is wrong against ``gt`` (IGNORE pixels black, excluded), split by whether the
    ``reference`` prediction (Source) was right there: what adaptation broke and what it fixed."""
    valid, wrong, ref_wrong = gt != IGNORE, pred != gt, reference != gt
    out = np.zeros((*gt.shape, 3), np.uint8)
    for (pred_bad, ref_bad), colour in ERROR_COLOURS.items():
        out[valid & (wrong == pred_bad) & (ref_wrong == ref_bad)] = colour
    return out


def panel_row(image: Path, label: Path, stem: str, runs: list[tuple[Path, dict]], detail: int,
              protocol: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The tiles of one image (all RGB at ``size`` = (W, H)): image, ground truth, each run's prediction,
    then the error, reliability and confidence maps of ``runs[detail]``. ``runs`` are (evaluation
    folder, its maps index), Source first."""
    rgb = read_rgb(image)
    if rgb.shape[1::-1] != tuple(size):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    gt = _ground_truth(protocol, label, size)
    preds = [_map(folder, stem, "prediction") for folder, _ in runs]
    tiles = [rgb, colorize(gt, protocol)] + [colorize(p, protocol) for p in preds]
    tiles.append(error_tile(gt, preds[detail], preds[0]))
    folder, index = runs[detail]
    if index.get("reliability"):
        tiles.append(heat_u8(_map(folder, stem, "reliability")))
    tiles.append(heat_u8(_map(folder, stem, "confidence")))
    return tiles


def column_titles(names: list[str], detail: int, index: dict) -> list[str]:
    """Titles matching ``panel_row``'s tiles (``index``: the maps index of ``names[detail]``)."""
    name = names[detail]
    titles = ["target image", "ground truth", *names, f"errors ({name})"]
    if index.get("reliability"):
        titles.append(f"reliability w ({name})")
    titles.append(f"teacher confidence ({name})" if index.get("confidence_of") == "teacher" else f"confidence ({name})")
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
    parts += [_class_legend(protocol, width), _error_legend(width), _colour_bar(width)]
    return np.concatenate(parts, axis=0)


def _class_legend(protocol: int, width: int) -> np.ndarray:
    """Colour swatches with class names, wrapped to ``width``."""
    return _swatches(list(zip(protocol_class_names(protocol), protocol_palette(protocol), strict=True)), width, 120)


def _error_legend(width: int) -> np.ndarray:
    """The error map's colours (framed: one of them is white)."""
    return _swatches([(f"errors: {n}", ERROR_COLOURS[k]) for k, n in ERROR_NAMES.items()]
                     + [("errors: ignore label", (0, 0, 0))], width, 190)


def _swatches(items: list[tuple[str, tuple[int, int, int]]], width: int, cell: int) -> np.ndarray:
    """Framed colour swatches with names, ``cell`` pixels apart, wrapped to ``width``."""
    row_h, per_row = 20, max(1, width // cell)
    out = np.full((row_h * (-(-len(items) // per_row)) + 6, width, 3), 255, np.uint8)
    for i, (name, col) in enumerate(items):
        x, y = (i % per_row) * cell + 4, (i // per_row) * row_h + 6
        cv2.rectangle(out, (x, y), (x + 14, y + 12), tuple(int(c) for c in col), -1)
        cv2.rectangle(out, (x, y), (x + 14, y + 12), GREY, 1)
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


def qualitative_panel(images: Path, labels: Path, runs: dict[str, Path], detail: str, protocol: int,
                      tile_w: int) -> tuple[np.ndarray, list[str], tuple[int, int]] | None:
    """The panel of the images whose maps the evaluations wrote, the image names and the size they
    were drawn at; None when the evaluations wrote no maps (``evaluate.maps`` 0). ``runs``: run name
    -> evaluation folder, Source first; ``detail``: the run whose error and confidence maps are shown."""
    first = next(iter(runs.values()))
    loaded = [(folder, read_maps_index(folder)) for folder in runs.values()]
    stems = [str(s) for s in loaded[0][1]["images"]]
    if not stems:
        return None
    size = tuple(int(v) for v in loaded[0][1].get("input_size", ()))
    if len(size) != 2:
        raise StvmError(first / "maps" / "index.json", "no input_size [width, height]")
    at = list(runs).index(detail)
    rows = [panel_row(images / f"{s}.png", labels / f"{s}.png", s, loaded, at, protocol, size) for s in stems]
    return compose(rows, column_titles(list(runs), at, loaded[at][1]), tile_w, protocol), stems, size
