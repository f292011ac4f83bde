"""The phases of `stvm synth_benchmark`: run each phase's steps, read back what they wrote, print its
tables (geometry, source model, shift probes, curves, Table IV with the gap closed and per class)
and freeze the two decisions (the shift by its bisection; the table's budget by the plateau rule
below, or as given).

Why apart from ``stvm.synth_benchmark.steps``: that module says which steps exist; this one reads the files
those steps wrote (every number comes from an evaluation's ``scores.json`` or ``curve.json``, the
one implementation in ``stvm.evaluate.metrics``) and decides nothing from a self-trained variant.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from stvm.synth_benchmark.steps import (
    ADABN_SHARE_MAX,
    CURVE_VARIANTS,
    PHASES,
    check_geometry,
    check_params,
    chosen_option,
    CLASS_IOU_MIN,
    FIRST_SHIFT,
    MAX_PROBES,
    RATIO_RANGE,
    SOURCE_MIOU_MIN,
    curve_steps,
    geometry_options,
    geometry_steps,
    probe_steps,
    recorded,
    run,
    shift_dir,
    table_steps,
)
from stvm.errors import StvmError
from stvm.io import atomic_path, write_json
from stvm.config import Params
from stvm.data.labels import CLASS_NAMES
from stvm.evaluate.metrics import metric_key
from stvm.io import read_json
from stvm.report.curves import collect_curves, seed_band
from stvm.report.tables import ablation_rows, collect, order_runs, stats


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


def source_table(root: Path, seed: int) -> tuple[str, bool]:
    """Markdown: the benchmark's source model per class on source val; whether it knows every class."""
    sv = root / "source_val/Source" / f"seed{seed}"
    sc, low = scores(sv), []
    lines = ["| class | source val IoU |", "|---|---|"]
    for name, here in zip(CLASS_NAMES, present(sv), strict=False):
        if here:
            lines.append(f"| {name} | {cell(sc.get(metric_key(name)))} |")
            low += [name] if (sc.get(metric_key(name)) or 0.0) < CLASS_IOU_MIN else []
    lines.append(f"| **mIoU** | **{sc['miou']:.1f}** |")
    ok = sc["miou"] >= SOURCE_MIOU_MIN and not low
    verdict = (f"Source-val mIoU {sc['miou']:.1f} (needs ≥ {SOURCE_MIOU_MIN:.0f}); classes present below "
               f"{CLASS_IOU_MIN:.0f} IoU: {', '.join(low) or 'none'} → {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines) + "\n\n" + verdict + "\n", ok


def probe(out: Path, shift: float, seed: int) -> dict[str, float]:
    """Source, AdaBN and Oracle at one shift, with the two property figures."""
    root = shift_dir(out, shift)
    src, ada, orc = (scores(root / "eval" / r / f"seed{seed}")["miou"] for r in ("Source", "AdaBN", "Oracle"))
    gap = orc - src
    return {"shift": shift, "source": src, "adabn": ada, "oracle": orc, "ratio": src / orc if orc > 0 else math.nan,
            "share": (ada - src) / gap if gap > 0 else math.nan}


def passes(m: dict[str, float]) -> bool:
    return RATIO_RANGE[0] <= m["ratio"] <= RATIO_RANGE[1] and m["share"] <= ADABN_SHARE_MAX


def next_shift(history: list[dict[str, float]]) -> float | None:
    """The bisection of synth.shift: the next probe, or None when the last one passed or no rule is left
    (the ratio in range but AdaBN closing too much: a stronger or weaker shift cannot fix both)."""
    lo, hi, s = 0.0, 1.0, FIRST_SHIFT
    for m in history:
        if passes(m) or RATIO_RANGE[0] <= m["ratio"] <= RATIO_RANGE[1]:
            return None
        lo, hi = (m["shift"], hi) if m["ratio"] > RATIO_RANGE[1] else (lo, m["shift"])
        s = round((lo + hi) / 2, 4)
    return s


def shift_table(history: list[dict[str, float]]) -> str:
    lines = ["| synth.shift | Source | AdaBN | Oracle | Source / Oracle | AdaBN closes | verdict |",
             "|---|---|---|---|---|---|---|"]
    for m in history:
        lines.append(f"| {m['shift']:g} | {m['source']:.1f} | {m['adabn']:.1f} | {m['oracle']:.1f} | "
                     f"{m['ratio'] * 100:.0f} % | {m['share'] * 100:.0f} % | {'PASS' if passes(m) else 'fail'} |")
    need = (f"needs Source / Oracle in {RATIO_RANGE[0] * 100:.0f}–{RATIO_RANGE[1] * 100:.0f} % and AdaBN closing "
            f"≤ {ADABN_SHARE_MAX * 100:.0f} % of the Source → Oracle gap")
    return "\n".join(lines) + f"\n\nEach probe {need}; the first that passes is frozen.\n"


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


# --- the driver ------------------------------------------------------------------------------------


def run_benchmark(p: Params, params: Path, out: Path, phase: str, budget: int | None, quiet: bool,
                  jobs: int = 1) -> int:
    """`stvm synth_benchmark`: one phase or all in order; exit status."""
    if budget is not None and budget < 1:
        raise StvmError(None, f"--budget: expected iterations >= 1, got {budget}")
    check_geometry(p)
    check_params(params, out)
    todo = list(PHASES) if phase == "all" else [phase]
    spent: dict[str, float] = {}
    for ph in todo:
        if not run_phase(ph, p, out, params, quiet, budget, spent, jobs):
            print(timing_table(spent, out))
            print(f"stvm synth_benchmark: {out}: phase {ph}: a property of the benchmark does not hold (FAIL above); "
                  "no later phase was run", file=sys.stderr)
            return 1
    print("\n## where the time goes\n\n" + timing_table(spent, out))
    emit(out, "cost.md", cost_table(out))
    return 0


def emit(out: Path, name: str, text: str) -> None:
    """Write one table (Markdown) under ``out`` and print it."""
    with atomic_path(out / name) as tmp:
        tmp.write_text(text)
    print(f"\n## {name}\n\n{text}", flush=True)


def frozen_shift(out: Path) -> float:
    """The shift phase's frozen value (StvmError before that phase has passed)."""
    path = out / "shift" / "frozen.json"
    if not path.is_file():
        raise StvmError(path, "no frozen shift yet: run --phase shift first (it must pass)")
    return float(read_json(path)["shift"])


def phase_shift(p: Params, out: Path, params: Path, quiet: bool, spent: dict[str, float], jobs: int = 1) -> bool:
    """Bisect synth.shift on Source, AdaBN and Oracle only; freeze the first probe that passes."""
    history: list[dict[str, float]] = []
    shift: float | None = FIRST_SHIFT
    while shift is not None and len(history) < MAX_PROBES:
        add(spent, run(probe_steps(p, out, shift), params, quiet, jobs))
        history.append(probe(out, shift, p.source_seed))
        shift = next_shift(history)
    emit(out, "shift.md", shift_table(history))
    write_json(out / "shift" / "probes.json", history)
    if not passes(history[-1]):
        return False
    recorded(out / "shift" / "frozen.json", {"shift": history[-1]["shift"]}, "the benchmark's shift")
    return True


def run_phase(phase: str, p: Params, out: Path, params: Path, quiet: bool, budget: int | None,
              spent: dict[str, float], jobs: int = 1) -> bool:
    """Run one phase to its end and print its tables; False when a property it checks fails."""
    if phase == "geometry":
        add(spent, run(geometry_steps(p, out), params, quiet, jobs))
        emit(out, "geometry.md", geometry_table(p, out))
        text, ok = source_table(out / "geometry" / chosen_option(p), p.source_seed)
        emit(out, "source_model.md", text)
        return ok
    if phase == "shift":
        return phase_shift(p, out, params, quiet, spent, jobs)
    shift = frozen_shift(out)
    if phase == "curves":
        add(spent, run(curve_steps(p, out, shift), params, quiet, jobs))
        emit(out, "curves.md", curves_table(out / "curves"))
        write_curve_figure(out / "curves")
        return True
    if budget is None and not (out / "table" / "budget.json").is_file():
        budget = plateau_budget(curve_means(out / "curves"))
        print(f"stvm synth_benchmark: Table IV's budget: {budget} iterations, the first snapshot from which every "
              f"curve stays within {PLATEAU_TOL} mIoU of its end (curves.md)", file=sys.stderr)
    elif budget is None:
        budget = int(read_json(out / "table" / "budget.json")["iterations"])
    recorded(out / "table" / "budget.json", {"iterations": budget}, "the table's budget")
    add(spent, run(table_steps(p, out, shift, budget), params, quiet, jobs))
    emit(out, "table4.md", table4(out / "table"))
    emit(out, "table4_per_class.md", per_class(out / "table"))
    return True


PLATEAU_TOL = 1.0  # mIoU: about the spread between adaptation seeds measured before (1-2 points)


def curve_means(root: Path) -> dict[str, tuple[list[int], list[float]]]:
    """The curves at the benchmark's learning rates (``CURVE_VARIANTS``): run -> (iterations, mean mIoU)."""
    curves = collect_curves(eval_files(root))
    missing = [v for v in CURVE_VARIANTS if v not in curves]
    if missing:
        raise StvmError(root, f"no curve for {', '.join(missing)}: run --phase curves first, or give --budget N")
    return {v: seed_band(curves[v])[:2] for v in CURVE_VARIANTS}


def plateau_budget(curves: dict[str, tuple[list[int], list[float]]], tol: float = PLATEAU_TOL) -> int:
    """Table IV's budget, fixed before any table run: the first snapshot from which every curve stays
    within ``tol`` of its final value; the same rule on any generator, so no person reads it off."""
    firsts = []
    for its, means in curves.values():
        far = [k for k, v in enumerate(means) if abs(v - means[-1]) > tol]
        firsts.append(its[far[-1] + 1] if far else its[0])
    return max(firsts)


def write_curve_figure(root: Path) -> None:
    """The mIoU-vs-iterations PNG of the curves phase (the same figure the report draws)."""
    from stvm.report.curves import curve_figure
    from stvm.report.stage import run_colour

    files = eval_files(root)
    levels = {r: stats(list(v.values()))[0] for r, v in collect(root / "eval").items() if r in ("Source", "AdaBN", "Oracle")}
    fig = curve_figure(collect_curves(files), levels, run_colour)
    if fig is not None:
        with atomic_path(root / f"{fig.name}.png") as tmp:
            tmp.write_bytes(fig.png)


def add(spent: dict[str, float], more: dict[str, float]) -> None:
    for group, seconds in more.items():
        spent[group] = spent.get(group, 0.0) + seconds


def timing_table(spent: dict[str, float], out: Path) -> str:
    """Where the time went (this invocation; resumed steps count 0), also written to timings.json."""
    previous = read_json(out / "timings.json") if (out / "timings.json").is_file() else {}
    total = {g: round(previous.get(g, 0.0) + spent.get(g, 0.0), 1) for g in {*previous, *spent}}
    write_json(out / "timings.json", total)
    lines = ["| steps | minutes (this run) | minutes (all runs) |", "|---|---|---|"]
    for g in sorted(total, key=lambda g: -total[g]):
        lines.append(f"| {g} | {spent.get(g, 0.0) / 60:.1f} | {total[g] / 60:.1f} |")
    return "\n".join(lines)


def cost_table(out: Path) -> str:
    """Seconds per iteration of every training run under ``out`` (from its train/adapt metrics)."""
    lines = ["| run | iterations | wall (s) | s / iteration |", "|---|---|---|---|"]
    for path in sorted([*out.rglob("train_metrics.json"), *out.rglob("adapt_metrics.json")]):
        m = read_json(path)
        if m.get("iterations"):
            lines.append(f"| {path.parent.relative_to(out)} | {m['iterations']} | {m['wall_seconds']:.0f} | "
                         f"{m['wall_seconds'] / m['iterations']:.3f} |")
    return "\n".join(lines) + "\n"
