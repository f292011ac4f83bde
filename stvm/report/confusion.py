"""Confusion matrices, row-normalised, one figure per run: which classes a run takes for which.

Each evaluation writes ``confusion.json`` (19 x 20 trainId pixel counts, rows = ground truth,
the last column "other"). A run's seeds are summed, the sum mapped to the report's protocol
(``stvm.evaluate.metrics.protocol_matrix``: classes outside it dropped, predictions of them moved to
"other") and each row divided by its total, so row *i* reads "of the pixels of class *i*, the share
predicted as each class" and the diagonal is per-class recall. A class with no pixel is a grey row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stvm.data.labels import CLASS_NAMES, protocol_class_names
from stvm.errors import StvmError
from stvm.evaluate.metrics import protocol_matrix
from stvm.report import figures, render
from stvm.report.figures import BLACK, GREY, SUPER, WHITE, draw_text, paste_dark, rotated_text
from stvm.report.tables import Results

INK = np.array((8, 48, 107), np.float64)  # the colour of a row's whole share (1.0); white is 0
CELL = 26  # pixels per cell


def counts(path: Path, data: dict[str, Any]) -> np.ndarray:
    """The 19 x 20 (or 19 x 19) count matrix of one confusion.json, checked (StvmError naming ``path``)."""
    try:
        m = np.asarray(data["matrix"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        m = None
    n = len(CLASS_NAMES)
    if m is None or m.ndim != 2 or m.shape[0] != n or m.shape[1] not in (n, n + 1) or (m < 0).any():
        raise StvmError(path, f"not an stvm confusion file (expected 'matrix' of {n} x {n + 1} counts)")
    return m


def row_normalised(res: Results, run: str, protocol: int) -> np.ndarray:
    """The run's (k, k+1) protocol matrix summed over seeds, each row divided by its total (NaN when 0)."""
    total = sum(counts(res.files[f"eval/{run}/seed{s}"].with_name("confusion.json"), c)
                for s, c in sorted(res.confusions[run].items()))
    m = protocol_matrix(total, protocol).astype(np.float64)
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, m / np.maximum(rows, 1), np.nan)


def matrix_image(norm: np.ndarray, names: list[str], title: str) -> np.ndarray:
    """An RGB heat map of ``norm`` (rows: ground truth ``names``; columns: ``names`` plus "other" when
    ``norm`` has one more column), each cell's share written in percent when it is at least 1 %."""
    cols = [*names, "other"][: norm.shape[1]]
    tops = [rotated_text(c, 0.4) for c in cols]
    left = max(cv2.getTextSize(n, figures.FONT, 0.4 * SUPER, SUPER)[0][0] for n in names) + 14 * SUPER
    top, cell = 44 * SUPER, CELL * SUPER
    below = max(t.shape[0] for t in tops) + 10 * SUPER
    h, w = top + cell * norm.shape[0] + below + 24 * SUPER, left + cell * norm.shape[1] + 20 * SUPER
    img = np.full((h, w, 3), 255, np.uint8)
    for i, j in np.ndindex(norm.shape):
        _cell(img, (left + j * cell, top + i * cell), norm[i, j])
    for i, name in enumerate(names):
        draw_text(img, name, (left - 6 * SUPER, top + i * cell + cell // 2 + 5 * SUPER), 0.4, anchor="right")
    for j, strip in enumerate(tops):
        paste_dark(img, strip, top + norm.shape[0] * cell + 6 * SUPER, left + j * cell + (cell - strip.shape[1]) // 2)
    cv2.rectangle(img, (left, top), (left + cell * norm.shape[1], top + cell * norm.shape[0]), BLACK, SUPER)
    draw_text(img, title, (w // 2, 26 * SUPER), 0.55, anchor="centre")
    draw_text(img, "rows: ground truth; columns: prediction; cells: % of the row's pixels",
              (w // 2, h - 8 * SUPER), 0.42, GREY, anchor="centre")
    return cv2.resize(img, (w // SUPER, h // SUPER), interpolation=cv2.INTER_AREA)


def _cell(img: np.ndarray, corner: tuple[int, int], share: float) -> None:
    """One cell: grey for a class with no pixel, else white to ``INK`` by ``share``, with its percent."""
    cell, (x, y) = CELL * SUPER, corner
    if not np.isfinite(share):
        img[y: y + cell, x: x + cell] = (200, 200, 200)
        return
    img[y: y + cell, x: x + cell] = np.round(255.0 + (INK - 255.0) * share).astype(np.uint8)
    if share >= 0.01:
        draw_text(img, f"{share * 100:.0f}", (x + cell // 2, y + cell // 2 + 5 * SUPER), 0.36,
                  WHITE if share > 0.5 else BLACK, anchor="centre")


def confusion_figures(res: Results, protocol: int) -> list[render.Figure]:
    """One row-normalised confusion figure per run, in report order."""
    names = list(protocol_class_names(protocol))
    out = []
    for run in res.runs:
        norm = row_normalised(res, run, protocol)
        if not np.nan_to_num(norm[:, -1]).any():  # no prediction outside the protocol: no "other" column
            norm = norm[:, :-1]
        seeds = ", ".join(map(str, sorted(res.confusions[run])))
        img = matrix_image(norm, names, f"{run}: confusion on target val, row-normalised (seeds {seeds})")
        out.append(render.Figure(f"confusion_{run}", f"Confusion matrix of {run}", figures.png_bytes(img),
                                 f"results/eval/{run}/seed<k>/confusion.json, pixel counts summed over seeds {seeds}, "
                                 f"each row divided by its total; grey rows: classes with no ground-truth pixel."))
    return out
