"""The learning curve: target-val mIoU against adaptation iterations, from each evaluation's curve.json.

``evaluate`` scores the snapshots a loop wrote (``adapt.snapshots`` / ``train_source.snapshots``)
into ``curve.json`` beside its metrics; this module reads those files only. Each variant is drawn as
its mean over seeds with a band from the lowest to the highest seed; Source, AdaBN and Oracle (runs
with no iterations to plot) are horizontal lines at their mean. Choosing the budget from this
figure is oracle model selection (it reads target labels), and the caption says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvm.errors import StvmError
from stvm.io import read_json
from stvm.report import figures, render

LEVELS = ("Source", "AdaBN", "Oracle")  # drawn as horizontal lines: nothing to iterate
ORACLE_SELECTION = ("Reading the budget off this figure is oracle model selection: the curve is scored on "
                    "target val labels, which a source-free method may not see. A budget for a table must be "
                    "fixed in advance and be the same for every variant.")


def read_curve(path: Path) -> list[tuple[int, float]]:
    """(iteration, mIoU) points of one curve.json, in iteration order (StvmError when malformed)."""
    data = read_json(path)
    points = data.get("points") if isinstance(data, dict) else None
    try:
        out = sorted((int(p["iteration"]), float(p["miou"])) for p in points)
    except (TypeError, KeyError, ValueError):
        raise StvmError(path, "not an stvm curve file (expected points of iteration and miou)") from None
    return out


def collect_curves(eval_files: dict[str, Path]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """run -> seed -> points, for every evaluation (``res.files['eval/<run>/seed<k>']``) with a curve of points."""
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for key, metrics_path in sorted(eval_files.items()):
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "eval" or not (metrics_path.parent / "curve.json").is_file():
            continue
        points = read_curve(metrics_path.parent / "curve.json")
        if points:  # a run without snapshots has an empty curve
            curves.setdefault(parts[1], {})[int(parts[2].removeprefix("seed"))] = points
    return curves


def seed_band(per_seed: dict[int, list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """(iterations every seed has, mean, min, max over seeds)."""
    rows = [dict(points) for points in per_seed.values()]
    its = sorted(set.intersection(*(set(r) for r in rows)))
    vals = [[r[i] for r in rows] for i in its]
    return its, [sum(v) / len(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals]


def curve_figure(curves: dict[str, dict[int, list[tuple[int, float]]]], levels: dict[str, float],
                 colour) -> render.Figure | None:
    """The mIoU-vs-iterations figure (None when no run has a curve); ``levels``: run -> mean mIoU."""
    series, xmax = [], 0
    for run, per_seed in curves.items():
        its, mean, lo, hi = seed_band(per_seed)
        if len(its) < 2:
            continue
        xmax = max(xmax, its[-1])
        label = f"{run} (mean, band min-max of {len(per_seed)} seed{'s' * (len(per_seed) > 1)})"
        series.append(figures.Series(label, its, mean, colour(run), band=(lo, hi)))
    if not series:
        return None
    for run in LEVELS:
        if run in levels:
            series.append(figures.Series(f"{run} {levels[run]:.1f}", [0, xmax], [levels[run]] * 2, colour(run)))
    img = figures.line_chart(series, "Target val mIoU against iterations", "iteration", "mIoU (%)")
    caption = ("evaluate's curve.json of every run with snapshots (adapt.snapshots), scored like the final model; "
               "each snapshot lies on the run's own poly schedule to its last iteration. " + ORACLE_SELECTION)
    return render.Figure("miou_vs_iterations", "mIoU against iterations", figures.png_bytes(img), caption)


def levels_of(evals: dict[str, dict[int, dict[str, Any]]]) -> dict[str, float]:
    """Mean mIoU over seeds of the runs drawn as horizontal lines."""
    return {r: sum(float(m["miou"]) for m in evals[r].values()) / len(evals[r]) for r in LEVELS if evals.get(r)}
