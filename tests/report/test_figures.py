"""The report's figures on hand-made inputs: tick labels, seed bands, bar charts, confusion shares, error maps."""

import numpy as np
import pytest

from stvm.data.labels import PROTOCOL_CLASSES
from stvm.errors import StvmError
from stvm.report import figures
from stvm.report.bars import Bars, bar_chart, value_span
from stvm.report.confusion import matrix_image, row_normalised
from stvm.report.panels import ERROR_COLOURS, error_tile
from stvm.report.tables import Results

RANGES = [(0.0, 15.0), (0.0, 1.5), (-0.3, 0.45), (0.0, 0.0075), (2.0, 4.0), (0.0, 150000.0), (0.0, 3e-5),
          (-12.5, 40.0), (1e-4, 6e-4), (97.0, 103.0)]


@pytest.mark.parametrize(("lo", "hi"), RANGES)
@pytest.mark.parametrize("target", [5, 6])
def test_every_tick_label_reads_back_as_its_grid_line(lo, hi, target):
    """A label names the value of the grid line it sits on (steps of 2.5 x 10^k need one more decimal)."""
    ticks = figures.nice_ticks(lo, hi, target)
    step = ticks[1] - ticks[0]
    labels = [figures.tick_label(t, step) for t in ticks]
    assert len(set(labels)) == len(labels), labels
    for t, label in zip(ticks, labels, strict=True):
        assert abs(float(label) - t) <= 1e-6 * step, (t, label)
    assert len({len(x.split("e")[0].split(".")[-1]) for x in labels if "." in x}) <= 1  # same decimals on an axis


def test_tick_labels_of_quarter_steps_and_integer_axes():
    assert figures.nice_ticks(0.0, 15.0, 6) == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]
    assert [figures.tick_label(t, 2.5) for t in (2.5, 7.5, 10.0)] == ["2.5", "7.5", "10.0"]
    assert figures.tick_label(0.75, 0.25) == "0.75" and figures.tick_label(0.1 + 0.2 - 0.3, 0.1) == "0"
    assert figures.nice_ticks(0.0, 15.0, 6, integer=True) == [0.0, 5.0, 10.0, 15.0]  # iterations: no 2.5
    assert figures.nice_ticks(2.0, 4.0, 6, integer=True) == [2.0, 3.0, 4.0]


def test_a_seed_band_is_drawn_behind_the_line():
    """The same axes with and without a band from 0 to 10 around a line from 0 to 10: the band shades
    the whole plot area (about 600 x 300 pixels) in 25 % of the line's colour."""
    line = figures.Series("a", [0, 10], [0.0, 10.0], (0, 114, 178))
    banded = figures.Series("a", [0, 10], [0.0, 10.0], (0, 114, 178), band=([0.0, 0.0], [10.0, 10.0]))
    plain, shaded = figures.line_chart([line], "t", "x", "y"), figures.line_chart([banded], "t", "x", "y")
    changed = np.abs(plain.astype(int) - shaded.astype(int)).sum(axis=2) > 30
    assert changed.sum() > 100_000


def test_bar_chart_draws_a_bar_per_run_and_class_up_or_down_from_zero():
    assert value_span([Bars("a", [None, 0.0], (0, 0, 0))]) == (-1.0, 1.0)
    lo, hi = value_span([Bars("a", [10.0, -5.0], (0, 0, 0))])
    assert lo < -5.0 and hi > 10.0
    orange, blue = (230, 159, 0), (86, 180, 233)
    img = bar_chart(["road", "car"], [Bars("AdaBN", [10.0, -5.0], orange), Bars("STvM", [None, 3.0], blue)], "t", "y")
    assert img.shape == (460, 900, 3)

    def area(colour):
        return int((np.abs(img.astype(int) - colour).max(axis=2) <= 2).sum())

    bar_only = bar_chart(["road", "car"], [Bars("AdaBN", [10.0, -5.0], orange), Bars("STvM", [None, None], blue)],
                         "t", "y")
    assert area(orange) > 2000 and area(blue) > 500
    assert int((np.abs(bar_only.astype(int) - blue).max(axis=2) <= 2).sum()) < 300  # legend swatch only


def _results(confusions: dict[str, dict[int, list[list[int]]]], tmp_path) -> Results:
    res = Results()
    for run, per_seed in confusions.items():
        for seed, matrix in per_seed.items():
            res.confusions.setdefault(run, {})[seed] = {"protocol": 19, "matrix": matrix}
            res.evals.setdefault(run, {})[seed] = {"miou": 0.0, "protocol": 19}
            res.files[f"eval/{run}/seed{seed}"] = tmp_path / run / f"seed{seed}" / "metrics.json"
    return res


def _matrix(cells: dict[tuple[int, int], int]) -> list[list[int]]:
    m = np.zeros((19, 20), np.int64)
    for (i, j), v in cells.items():
        m[i, j] = v
    return m.tolist()


def test_confusion_rows_are_shares_of_the_ground_truth_pooled_over_seeds(tmp_path):
    # road (0): 3 right and 1 taken for car (13) in seed 0, 4 right in seed 1; terrain (9) taken for road
    res = _results({"STvM": {0: _matrix({(0, 0): 3, (0, 13): 1, (9, 0): 2}), 1: _matrix({(0, 0): 4})}}, tmp_path)
    norm19 = row_normalised(res, "STvM", 19)
    assert norm19.shape == (19, 20) and norm19[0, 0] == 7 / 8 and norm19[0, 13] == 1 / 8 and norm19[9, 0] == 1.0
    assert np.isnan(norm19[1]).all()  # sidewalk has no pixel: no share
    norm16 = row_normalised(res, "STvM", 16)  # terrain is not a class of protocol 16: its row is gone
    assert norm16.shape == (16, 17) and norm16[0, 0] == 7 / 8 and norm16[0, PROTOCOL_CLASSES[16].index(13)] == 1 / 8
    img = matrix_image(norm19[:, :-1], [f"class {i}" for i in range(19)], "t")
    assert img.ndim == 3 and img.shape[0] > 19 * 26 and img.std() > 5


def test_a_malformed_confusion_matrix_names_its_file(tmp_path):
    res = _results({"Source": {0: [[1, 2]]}}, tmp_path)
    with pytest.raises(StvmError, match="confusion.json"):
        row_normalised(res, "Source", 19)


def test_error_map_marks_wrong_pixels_ignores_void_and_compares_with_source():
    ignore = 255
    gt = np.array([[0, 1, ignore], [2, 2, 0]], np.uint8)
    pred = np.array([[0, 0, 5], [2, 1, 0]], np.uint8)
    source = np.array([[1, 1, 5], [1, 1, 0]], np.uint8)
    tile = error_tile(gt, pred, source)
    expected = [[(False, True), (True, False), None], [(False, True), (True, True), (False, False)]]
    for i, j in np.ndindex(gt.shape):
        colour = (0, 0, 0) if expected[i][j] is None else ERROR_COLOURS[expected[i][j]]
        assert tuple(tile[i, j]) == colour, (i, j)


def test_line_chart_is_legible_size_and_draws_lines():
    assert figures.nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert figures.tick_label(0.0025, 0.0005) == "0.0025" and figures.tick_label(20000, 5000) == "20000"
    img = figures.line_chart([figures.Series("a", [0, 1, 2], [0, 1, 4], (255, 0, 0))], "t", "x", "y")
    assert img.shape == (400, 800, 3)
    red = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 200  # the line (and its legend swatch) is there
    flat = figures.line_chart([figures.Series("c", [0, 1], [2.0, 2.0], (0, 0, 255))], "t", "x", "y")
    assert flat.shape == (400, 800, 3)
