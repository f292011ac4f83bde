"""The phases of `stvm synth_benchmark`: run each phase's steps, print its tables and make the
phase's decisions: the geometry's source model must know every class, the shift is bisected and
frozen, the table's budget comes from the curves by the plateau rule below (or as given).

Why apart from ``steps`` and ``tables``: those say which stage calls exist and read back what they
wrote; this module decides, and nothing it decides reads a self-trained variant before the table.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from stvm.config import Params
from stvm.data.labels import CLASS_NAMES
from stvm.errors import StvmError
from stvm.evaluate.metrics import metric_key
from stvm.io import atomic_path, read_json, write_json
from stvm.report.curves import collect_curves, seed_band
from stvm.report.tables import collect, stats
from stvm.synth_benchmark.runner import check_params, recorded, run
from stvm.synth_benchmark.steps import (
    ADABN_SHARE_MAX,
    CALIBRATED_PHASES,
    CLASS_IOU_MIN,
    CURVE_VARIANTS,
    FIRST_SHIFT,
    MAX_PROBES,
    PHASES,
    RATIO_RANGE,
    SOURCE_MIOU_MIN,
    ablation_steps,
    calibrate_steps,
    check_geometry,
    chosen_option,
    curve_steps,
    geometry_steps,
    probe_steps,
    shift_dir,
    table_steps,
)
from stvm.synth_benchmark.tables import (
    calibration_table,
    cell,
    cost_table,
    curves_table,
    eval_files,
    geometry_table,
    per_class,
    present,
    scores,
    table4,
)


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


# --- the driver ------------------------------------------------------------------------------------


def run_benchmark(p: Params, params: Path, out: Path, phase: str, budget: int | None, quiet: bool,
                  jobs: int = 1) -> int:
    """`stvm synth_benchmark`: one phase or all in order; exit status."""
    if budget is not None and budget < 1:
        raise StvmError(None, f"--budget: expected iterations >= 1, got {budget}")
    todo = list(PHASES) if phase == "all" else [phase]
    if budget is not None and "table" not in todo:
        raise StvmError(None, f"--budget sets the table phase's iterations; phase {phase} reads adapt.iterations "
                              "from the params")
    if set(todo) & set(PHASES):
        check_geometry(p)
    check_params(params, out)
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
    if phase in CALIBRATED_PHASES:
        return phase_calibrated(phase, p, out, params, quiet, spent, jobs)
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


def phase_calibrated(phase: str, p: Params, out: Path, params: Path, quiet: bool, spent: dict[str, float],
                     jobs: int = 1) -> bool:
    """Phases of the calibrated preset, at the params' own shift, geometry and budget: ``calibrate`` (the
    source model's gap) and ``ablation`` (calibrate's steps, then every variant and seed)."""
    steps = calibrate_steps(p, out) if phase == "calibrate" else ablation_steps(p, out)
    add(spent, run(steps, params, quiet, jobs))
    emit(out, "calibration.md", calibration_table(out / "calibrate", p.source_seed, p.synth.shift))
    if phase == "ablation":
        emit(out, "ablation.md", table4(out / "ablation"))
        emit(out, "ablation_per_class.md", per_class(out / "ablation"))
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


