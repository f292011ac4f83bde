"""Per-class Δ: each adapted run's per-class IoU minus Source's and minus AdaBN's (a table and bar charts).

Both sides are means over their own seeds of scores.json ``iou/<class>`` (and metrics.json
``miou``), so a Δ reads "what this adaptation gains or loses on this class, against the model it
started from (Source) or against the cheapest adaptation (AdaBN)". A class absent from ground
truth and prediction on either side has no IoU there, and so no Δ.
"""

from __future__ import annotations

from collections.abc import Callable

from stvm.report import figures, render
from stvm.report.bars import Bars, bar_chart
from stvm.report.tables import OURS, TRAINED, Cell, Results, Table, class_columns, mean_or_none, run_info, seed_values

REFERENCES = ("Source", "AdaBN")


def _means(res: Results, run: str, keys: list[str]) -> list[float | None]:
    return [mean_or_none(seed_values(res, run, k)) for k in keys]


def delta_rows(res: Results) -> list[tuple[str, str, list[float | None]]]:
    """(run, reference, Δ per class then Δ mIoU) of every adapted run against each reference that ran."""
    _, keys = class_columns(run_info(res)["protocol"])
    keys = keys + ["miou"]
    out = []
    for ref in REFERENCES:
        if ref not in res.evals:
            continue
        base = _means(res, ref, keys)
        for run in res.runs:
            if run in TRAINED or run == ref:
                continue
            mine = _means(res, run, keys)
            out.append((run, ref, [None if a is None or b is None else a - b for a, b in zip(mine, base, strict=True)]))
    return out


def delta_table(res: Results) -> Table | None:
    """The Δ rows as a table (None when no adapted run or no reference ran)."""
    rows = delta_rows(res)
    if not rows:
        return None
    names, _ = class_columns(run_info(res)["protocol"])
    cells: list[list[Cell]] = [[run, ref, *values] for run, ref, values in rows]
    note = (f"{OURS}: mean over seeds of the run's scores.json `iou/<class>` (last column: metrics.json `miou`) "
            f"minus the same mean of the reference, in IoU points; + = better than the reference; – = the class "
            f"has no IoU on one side (absent from its ground truth and prediction).")
    return Table("per_class_delta", "Per-class Δ IoU against Source and against AdaBN",
                 ["run", "Δ against", *names, "mIoU"], cells, note, signed=True)


def delta_figures(res: Results, colour: Callable[[str], tuple[int, int, int]]) -> list[render.Figure]:
    """One grouped bar chart per reference: a bar per adapted run in each class's group, and in mIoU's."""
    rows = delta_rows(res)
    names, _ = class_columns(run_info(res)["protocol"]) if rows else ([], [])
    out = []
    for ref in REFERENCES:
        bars = [Bars(run, values, colour(run)) for run, r, values in rows if r == ref]
        if not bars:
            continue
        img = bar_chart([*names, "mIoU"], bars, f"Per-class IoU of each adapted run minus {ref}'s (mean over seeds)",
                        f"IoU minus {ref}'s (points)")
        out.append(render.Figure(f"per_class_delta_{ref.lower()}", f"Per-class Δ IoU against {ref}",
                                 figures.png_bytes(img),
                                 f"The rows 'Δ against {ref}' of the table above, as bars; a class with no bar has "
                                 f"no IoU on one side."))
    return out
