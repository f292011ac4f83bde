"""Metrics files -> paper-style tables (Table IV ablation with mean, std and min over seeds).

Every number comes from a ``results/eval/<name>/seed<k>/metrics.json`` the pipeline wrote.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from stvm.errors import StvmError
from stvm.io import read_json

ORDER = ("Source", "ST", "ST_Aug", "ST_MT", "STvM_Raw", "STvM")


def collect(eval_root: Path, key: str = "miou") -> dict[str, dict[int, float]]:
    """``{run name: {seed: metric}}`` for every metrics file under ``eval_root``."""
    if not eval_root.is_dir():
        raise StvmError(eval_root, "no evaluation results (run the pipeline first)")
    out: dict[str, dict[int, float]] = {}
    for path in sorted(eval_root.glob("*/seed*/metrics.json")):
        name, seed = path.parent.parent.name, int(path.parent.name.removeprefix("seed"))
        value = read_json(path).get(key)
        if value is not None:
            out.setdefault(name, {})[seed] = float(value)
    if not out:
        raise StvmError(eval_root, f"no metrics.json with '{key}' found")
    return out


def ablation_rows(runs: dict[str, dict[int, float]]) -> list[dict[str, float | str | int]]:
    """Rows in Table IV order: mean, std (sample, 0 for one seed), min, seeds and delta to the row above."""
    rows, prev = [], None
    for name in sorted(runs, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        vals = [runs[name][s] for s in sorted(runs[name])]
        mean = statistics.fmean(vals)
        rows.append({"name": name, "mean": mean, "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                     "min": min(vals), "seeds": len(vals), "delta": None if prev is None else mean - prev})
        prev = mean
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    """The ablation rows as a Markdown table."""
    lines = ["| run | mIoU mean ± std | min | seeds | Δ to row above |", "|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r["delta"] is None else f"{r['delta']:+.1f}"
        lines.append(f"| {r['name']} | {r['mean']:.1f} ± {r['std']:.1f} | {r['min']:.1f} | {r['seeds']} | {delta} |")
    return "\n".join(lines)
