"""Qualitative panel: target val image, ground truth, Source and adapted predictions, reliability and confidence.

For each of the first N target val images (sorted by name), one row of tiles side by side:
image | ground truth | Source prediction | adapted prediction | reliability | teacher confidence.
Labels are colourised with the Cityscapes palette. The reliability map is Eq. 4 of the adapted
checkpoint's own metric network M (``meta['metric_head']``) on the teacher's F features, read at
the teacher's pseudo-label, with the run's alpha and beta (``meta['params']``), exactly as in
training. The teacher (``meta['teacher']``) gives the confidence (max softmax); without a mean
teacher the adapted network's own confidence is shown and the column says so.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from stvm.data.images import normalize, read_label, read_rgb
from stvm.data.labels import colorize, protocol_class_names, protocol_lut, protocol_palette
from stvm.errors import StvmError
from stvm.evaluate.nets import Nets, confidence_map, load_nets, reliability_map
from stvm.evaluate.nets import probs as _probs
from stvm.report.figures import BLACK, FONT, GREY

HEADER = 28  # height of the column-title bar, pixels


def heat(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB with the viridis colour map."""
    u8 = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def _label_tiles(protocol: int, label_path: Path, size: tuple[int, int]) -> np.ndarray:
    """Ground truth in ``protocol`` indices, resized (nearest) to ``size`` and colourised."""
    lab = protocol_lut(protocol)[read_label(label_path)]
    lab = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
    return colorize(lab, protocol)


def panel_row(image: Path, label: Path, source: Nets, adapted: Nets | None, size: tuple[int, int],
              device: torch.device) -> list[np.ndarray]:
    """The tiles of one image (all RGB at ``size`` = (W, H))."""
    protocol = int(source.meta.get("protocol", 19))
    rgb = read_rgb(image)
    if rgb.shape[1::-1] != tuple(size):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    x = normalize(rgb)[None].to(device)
    source_pred = _probs(source.model, x).argmax(0).cpu().numpy()
    tiles = [rgb, _label_tiles(protocol, label, size), colorize(source_pred, protocol)]
    last = adapted or source
    if adapted is not None:
        tiles.append(colorize(_probs(adapted.model, x).argmax(0).cpu().numpy(), protocol))
    if last.metric is not None:
        tiles.append(heat(reliability_map(last, x)))
    tiles.append(heat(confidence_map(last, x)))
    return tiles


def column_titles(adapted_name: str | None, adapted: Nets | None, source: Nets) -> list[str]:
    """Titles matching ``panel_row``'s tiles."""
    last, name = (adapted, adapted_name) if adapted is not None else (source, "Source")
    titles = ["target image", "ground truth", "Source"] + ([adapted_name] if adapted is not None else [])
    if last.metric is not None:
        titles.append(f"reliability w ({name})")
    titles.append(f"teacher confidence ({name})" if last.teacher is not None else f"confidence ({name})")
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


def qualitative_panel(images: Path, labels: Path, source_model: Path, adapted_model: Path | None,
                      adapted_name: str | None, n: int, size: tuple[int, int], tile_w: int,
                      device: torch.device) -> tuple[np.ndarray, list[str]]:
    """The panel image for the first ``n`` val images, and the image names used."""
    stems = sorted(p.name for p in images.glob("*.png"))[:n]
    if not stems:
        raise StvmError(images, "no target val images for the qualitative panel")
    source = load_nets(source_model, device)
    adapted = load_nets(adapted_model, device) if adapted_model is not None else None
    rows = [panel_row(images / s, labels / s, source, adapted, size, device) for s in stems]
    titles = column_titles(adapted_name, adapted, source)
    return compose(rows, titles, tile_w, int(source.meta.get("protocol", 19))), stems

