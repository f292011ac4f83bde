"""The synthetic benchmark's tables (Markdown), read back from the files its steps wrote: every number
comes from an evaluation's ``scores.json``, ``confusion.json`` or ``curve.json`` (the one
implementation in ``stvm.evaluate.metrics``) or a training run's own metrics file.

Why apart from ``phases``: these only read and format; ``phases`` runs the steps and decides."""

from __future__ import annotations

import math
from pathlib import Path

from stvm.config import Params
from stvm.data.labels import CLASS_NAMES
from stvm.evaluate.metrics import metric_key
from stvm.io import read_json
from stvm.report.curves import collect_curves, seed_band
from stvm.report.tables import ablation_rows, collect, order_runs, stats
from stvm.synth_benchmark.steps import FIRST_SHIFT, geometry_options


def scores(folder: Path) -> dict[str, float]:
    return read_json(folder / "scores.json")


def present(folder: Path) -> list[bool]:
    """Per class (trainId order; rows of the confusion matrix are the ground truth): present?"""
    return [sum(row) > 0 for row in read_json(folder / "confusion.json")["matrix"]]


def cell(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.1f}"


def geometry_table(p: Params, out: Path) -> str:
    """Markdown: each geometry choice alone, on the source model (source val, target val) and AdaBN."""
    s = p.source_seed
    lines = ["| option | head dilations | source crop | source val | Source on target | AdaBN on target | AdaBN − Source |",
             "|---|---|---|---|---|---|---|"]
    for name, overrides in geometry_options(p).items():
        root = out / "geometry" / name
        sets = dict(o.split("=", 1) for o in overrides)
        dil = sets["train_source.head_dilations"]
        sv, tv = scores(root / "source_val/Source" / f"seed{s}")["miou"], scores(root / "eval/Source" / f"seed{s}")["miou"]
        ada = scores(root / "eval/AdaBN" / f"seed{s}")["miou"]
        lines.append(f"| {name} | {dil if dil != '[]' else 'paper (6, 12, 18, 24)'} | {sets['train_source.crop']} | "
                     f"{sv:.1f} | {tv:.1f} | {ada:.1f} | {ada - tv:+.1f} |")
    return "\n".join(lines) + f"\n\nTarget: the first shift probe (synth.shift {FIRST_SHIFT:g}); seed {s}.\n"


def eval_files(root: Path) -> dict[str, Path]:
    """``eval/<run>/seed<k>`` -> its metrics.json, for every evaluation under ``root/eval``."""
    return {f"eval/{d.parent.name}/{d.name}": d / "metrics.json" for d in sorted((root / "eval").glob("*/seed*"))}


def curves_table(root: Path) -> str:
    """Markdown: mIoU at every snapshot, per curve run (mean over its seeds), beside the levels."""
    curves = collect_curves(eval_files(root))
    runs = order_runs(curves)
    its = sorted({i for r in runs for i in seed_band(curves[r])[0]})
    lines = ["| iteration | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for i in its:
        row = [dict(zip(*seed_band(curves[r])[:2], strict=True)).get(i) for r in runs]
        lines.append(f"| {i} | " + " | ".join(cell(v) for v in row) + " |")
    levels = {r: collect(root / "eval").get(r, {}) for r in ("Source", "AdaBN", "Oracle")}
    text = ", ".join(f"{r} {stats(list(v.values()))[0]:.1f}" for r, v in levels.items() if v)
    return "\n".join(lines) + f"\n\nLevels: {text}.\n"


def table4(root: Path) -> str:
    """Markdown: Table IV with mean ± std, min, seeds and the share of the Source→Oracle gap closed."""
    rows = ablation_rows(collect(root / "eval"))
    by = {r["name"]: r for r in rows}
    gap = by["Oracle"]["mean"] - by["Source"]["mean"] if "Oracle" in by and "Source" in by else None
    lines = ["| run | mIoU mean ± std | min | seeds | gap closed |", "|---|---|---|---|---|"]
    for r in rows:
        closed = "" if not gap else f"{(r['mean'] - by['Source']['mean']) / gap * 100 + 0.0:.0f} %"
        spread = f"{r['std']:.1f}" if r["seeds"] > 1 else "n/a"
        lines.append(f"| {r['name']} | {r['mean']:.1f} ± {spread} | {r['min']:.1f} | {r['seeds']} | {closed} |")
    return "\n".join(lines) + "\n"


def per_class(root: Path) -> str:
    """Markdown: per-class IoU, mean over seeds, one column per run (classes present in the val set)."""
    runs = order_runs(collect(root / "eval"))
    folders = {r: sorted((root / "eval" / r).glob("seed*")) for r in runs}
    here = present(folders[runs[0]][0])
    lines = ["| class | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for name, ok in zip(CLASS_NAMES, here, strict=False):
        if ok:
            vals = [stats([scores(f).get(metric_key(name), math.nan) for f in folders[r]])[0] for r in runs]
            lines.append(f"| {name} | " + " | ".join(cell(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def cost_table(out: Path) -> str:
    """Seconds per iteration of every training run under ``out`` (from its train/adapt metrics)."""
    lines = ["| run | iterations | wall (s) | s / iteration |", "|---|---|---|---|"]
    for path in sorted([*out.rglob("train_metrics.json"), *out.rglob("adapt_metrics.json")]):
        m = read_json(path)
        if m.get("iterations"):
            lines.append(f"| {path.parent.relative_to(out)} | {m['iterations']} | {m['wall_seconds']:.0f} | "
                         f"{m['wall_seconds'] / m['iterations']:.3f} |")
    return "\n".join(lines) + "\n"


def calibration_table(root: Path, seed: int, shift: float) -> str:
    """Markdown: the source model per class on held-out source frames and on the target val set, and
    the gap between them (classes present in either)."""
    sv, tv = root / "source_val/Source" / f"seed{seed}", root / "eval/Source" / f"seed{seed}"
    a, b = scores(sv), scores(tv)
    lines = ["| class | source val | target val | gap |", "|---|---|---|---|"]
    for name, here_s, here_t in zip(CLASS_NAMES, present(sv), present(tv), strict=False):
        if here_s or here_t:
            x, y = a.get(metric_key(name)), b.get(metric_key(name))
            gap = cell(x - y) if x is not None and y is not None else cell(None)
            lines.append(f"| {name} | {cell(x)} | {cell(y)} | {gap} |")
    lines.append(f"| **mIoU** | **{a['miou']:.1f}** | **{b['miou']:.1f}** | **{a['miou'] - b['miou']:.1f}** |")
    return "\n".join(lines) + f"\n\nSource model seed {seed}; target at synth.shift {shift:g}.\n"
