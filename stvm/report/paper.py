"""The paper's Tables I-VII, shipped as CSV package data (``stvm/report/paper/*.csv``).

The report prints these numbers beside a run's own; they are read from the CSVs, never typed into
code. Cells are returned as floats where they hold a number and ``None`` for "-" or empty, so the
report can format them the same way as its own numbers.
"""

from __future__ import annotations

import csv
import io
import re
from importlib import resources

from stvm.errors import StvmError

CITATION = ('I. B. Akkaya and U. Halici, "Self-training via Metric Learning for Source-Free Domain '
            'Adaptation of Semantic Segmentation", arXiv:2212.04227, 2022.')

FILES = {
    1: "table1_gta5_to_cityscapes.csv",
    2: "table2_synthia_to_cityscapes.csv",
    3: "table3_cityscapes_to_nthu.csv",
    4: "table4_ablation.csv",
    6: "table6_variance.csv",
    7: "table7_metric_silhouette.csv",
}

_PLUS_MINUS = re.compile(r"^\$?\s*([-+]?[\d.]+)\s*\\pm\s*([-+]?[\d.]+)\s*\$?$")


def number(cell: str) -> float | None:
    """A CSV cell as a float (``+6.8`` -> 6.8); ``None`` for "-", empty or text."""
    try:
        return float(cell.strip())
    except ValueError:
        return None


def plus_minus(cell: str) -> tuple[float, float] | None:
    """``"$39.68 \\pm 1.49$"`` (with or without the dollars) -> ``(39.68, 1.49)``."""
    m = _PLUS_MINUS.match(cell.strip())
    return (float(m.group(1)), float(m.group(2))) if m else None


def read_table(table: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows (raw strings, cut to the header's width) of paper Table ``table``."""
    if table not in FILES:
        raise StvmError(None, f"no paper table {table} shipped (have {sorted(FILES)})")
    res = resources.files("stvm") / "report" / "paper" / FILES[table]
    try:
        text = res.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StvmError(str(res), "paper table missing from the installed package") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    header = rows[0]
    return header, [(r + [""] * len(header))[: len(header)] for r in rows[1:]]


def short_name(name: str) -> str:
    """Paper row name -> our variant spelling for matching (``STAug`` and ``ST_Aug`` -> ``STAUG``)."""
    return name.replace("_", "").replace(" ", "").upper()
