"""`stvm benchmark`: the synthetic benchmark tier, end to end, as one resumable command.

Why one command and not the DVC DAG: the benchmark is a measurement of the method (like
`make calibrate`), with three products the pipeline does not make -- the source-model table, the
shift-decomposition table (one target per part of the shift) and an Oracle trained on *target*
labels, the ceiling no source-free method may use. Each step is one ``python -m stvm <stage>`` call
writing its own folder atomically; a step whose output exists is skipped, so an interrupted run
resumes. Phase ``properties`` measures what the benchmark is (source model, shift parts, Oracle) and
is meant to be read and frozen before phase ``table`` runs any adaptation variant on it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stvm.config import SHIFT_PART_NAMES, Params
from stvm.data.labels import CLASS_NAMES
from stvm.evaluate.metrics import metric_key
from stvm.errors import StvmError
from stvm.io import atomic_path, read_json, write_json
from stvm.report.tables import ablation_rows, collect

SOURCE_MIOU_MIN, CLASS_IOU_MIN = 50.0, 10.0  # issue: a source model that knows every class
LOSS_MIN, ADABN_SHARE_MAX = 20.0, 0.5  # the shift loses >= 20 mIoU; AdaBN recovers <= half of it


@dataclass(frozen=True)
class Step:
    """One stage call: ``argv`` after ``python -m stvm``; skipped when ``done`` exists."""

    group: str  # where the time goes: data, source, parts, oracle, table, report
    name: str
    argv: tuple[str, ...]
    done: Path


def _evaluate(group: str, name: str, model: Path, prepared: Path, split: str, out: Path) -> Step:
    return Step(group, name, ("evaluate", "--model", str(model), "--images", str(prepared / split / "images"),
                              "--labels", str(prepared / split / "labels"), "--out", str(out)),
                out / "metrics.json")


def _data_steps(out: Path, part: str | None) -> list[Step]:
    """Synthesise and prepare one benchmark world (all parts, or one part of the shift alone)."""
    root = out if part is None else out / "parts" / part
    raw, prep = root / "raw", root / "prepared"
    only = () if part is None else ("--only-part", part)
    group = "data" if part is None else "parts"
    steps = [Step(group, f"synth {part or 'all parts'}", ("synth", "--out", str(raw), *only), raw / "synth.json")]
    if part is None:
        steps.append(Step(group, "prepare source", ("prepare", "--dataset", "gta5", "--root", str(raw / "source"),
                                                    "--out", str(prep / "source")), prep / "source/manifest.json"))
    steps.append(Step(group, f"prepare target {part or ''}".strip(),
                      ("prepare", "--dataset", "cityscapes", "--root", str(raw / "target"), "--out", str(prep / "target")),
                      prep / "target/manifest.json"))
    return steps


def _adapt(group: str, variant: str, seed: int, source: Path, prepared: Path, models: Path, evals: Path,
           where: str = "") -> list[Step]:
    model = models / variant / f"seed{seed}"
    return [Step(group, f"adapt {variant} seed {seed}{where}",
                 ("adapt", "--variant", variant, "--seed", str(seed), "--source-model", str(source),
                  "--target-images", str(prepared / "target/train/images"), "--out", str(model)), model / "model.pt"),
            _evaluate(group, f"evaluate {variant} seed {seed}{where}", model / "model.pt", prepared / "target", "val",
                      evals / variant / f"seed{seed}")]


def plan(p: Params, out: Path, phase: str) -> list[Step]:
    """Every step of ``phase`` (properties, table or all), in order."""
    prep, s = out / "prepared", p.source_seed
    source = out / "models/Source" / f"seed{s}" / "model.pt"
    steps = _data_steps(out, None)
    steps.append(Step("source", "train source", ("train_source", "--seed", str(s), "--images", str(prep / "source/train/images"),
                                                 "--labels", str(prep / "source/train/labels"), "--out", str(source.parent)),
                      source))
    steps.append(_evaluate("source", "evaluate source on source val", source, prep / "source", "val",
                           out / "source_val/Source" / f"seed{s}"))
    steps.append(_evaluate("source", "evaluate source on target val", source, prep / "target", "val",
                           out / "eval/Source" / f"seed{s}"))
    for part in ("none", *SHIFT_PART_NAMES):
        steps += _data_steps(out, part)
        root = out / "parts" / part
        steps.append(_evaluate("parts", f"evaluate source on {part}", source, root / "prepared/target", "val",
                               root / "eval/Source" / f"seed{s}"))
        steps += _adapt("parts", "AdaBN", s, source, root / "prepared", root / "models", root / "eval", f" ({part})")
    steps += _adapt("parts", "AdaBN", s, source, prep, out / "models", out / "eval", " (all parts)")
    oracle = out / "models/Oracle" / f"seed{s}"
    steps.append(Step("oracle", "train oracle on target labels",
                      ("train_source", "--seed", str(s), "--images", str(prep / "target/train/images"),
                       "--labels", str(prep / "target/train/labels"), "--out", str(oracle)), oracle / "model.pt"))
    steps.append(_evaluate("oracle", "evaluate oracle", oracle / "model.pt", prep / "target", "val", out / "eval/Oracle" / f"seed{s}"))
    table = [st for v in p.variants for seed in p.seeds
             for st in _adapt("table", v, seed, source, prep, out / "models", out / "eval")]
    table.append(Step("report", "report", ("report", "--eval", str(out / "eval"), "--models", str(out / "models"),
                                            "--prepared", str(prep), "--synth", str(out / "raw/synth.json"),
                                            "--out", str(out / "report")), out / "report/report.md"))
    return {"properties": steps, "table": table, "all": steps + table}[phase]


def check_params(params: Path, out: Path) -> None:
    """Refuse to resume ``out`` with other params than it was made with (skipped steps would be stale)."""
    text = params.read_text()
    stamp = out / "params.yaml"
    if stamp.is_file():
        if stamp.read_text() != text:
            raise StvmError(stamp, f"{out} was made with other params than {params}; "
                                   "delete it or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(text)


def run(steps: list[Step], params: Path, quiet: bool = False) -> dict[str, float]:
    """Run the steps not yet done, one at a time; return seconds spent per group (skipped steps: 0)."""
    spent: dict[str, float] = {}
    todo = [st for st in steps if not st.done.exists()]
    print(f"benchmark: {len(steps) - len(todo)} of {len(steps)} steps already done", file=sys.stderr)
    for i, st in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {st.name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        argv = [sys.executable, "-m", "stvm", *st.argv, "--params", str(params)] + (["--quiet"] if quiet else [])
        rc = subprocess.run(argv, stdout=subprocess.DEVNULL).returncode
        if rc != 0:
            raise StvmError(st.done.parent, f"benchmark step '{st.name}' failed (exit {rc}); rerun to resume")
        spent[st.group] = spent.get(st.group, 0.0) + time.perf_counter() - t0
        print(f"[{i}/{len(todo)}] {st.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return spent


def _scores(folder: Path) -> dict[str, float]:
    return read_json(folder / "scores.json")


def _present(folder: Path) -> list[bool]:
    """Per class (trainId order, the rows of the 19-class confusion matrix = ground truth): present?"""
    matrix = read_json(folder / "confusion.json")["matrix"]
    return [sum(row) > 0 for row in matrix]


def _cell(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.1f}"


def source_table(out: Path, seed: int) -> tuple[str, bool]:
    """Markdown: the source model per class on source val and target val; and whether it passes."""
    sv, tv = out / "source_val/Source" / f"seed{seed}", out / "eval/Source" / f"seed{seed}"
    s_sc, t_sc = _scores(sv), _scores(tv)
    lines = ["| class | source val IoU | target val IoU |", "|---|---|---|"]
    low = []
    for name, here in zip(CLASS_NAMES, _present(sv)):
        s, t = s_sc.get(metric_key(name)), t_sc.get(metric_key(name))
        if s is None and t is None:
            continue
        lines.append(f"| {name} | {_cell(s)} | {_cell(t)} |")
        if here and (s or 0.0) < CLASS_IOU_MIN:
            low.append(name)
    lines.append(f"| **mIoU** | **{s_sc['miou']:.1f}** | **{t_sc['miou']:.1f}** |")
    ok = s_sc["miou"] >= SOURCE_MIOU_MIN and not low
    verdict = (f"Source-val mIoU {s_sc['miou']:.1f} (needs ≥ {SOURCE_MIOU_MIN:.0f}); classes present below "
               f"{CLASS_IOU_MIN:.0f} IoU: {', '.join(low) or 'none'} → {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines) + "\n\n" + verdict + "\n", ok


def parts_table(out: Path, seed: int) -> tuple[str, bool]:
    """Markdown: per part of the shift alone (and none, and all), the source model and AdaBN on its target."""
    source_val = _scores(out / "source_val/Source" / f"seed{seed}")["miou"]
    lines = ["| shift | Source on target | loss vs source val | AdaBN | AdaBN recovers |", "|---|---|---|---|---|"]
    rows = [(part, out / "parts" / part) for part in ("none", *SHIFT_PART_NAMES)] + [("all parts (benchmark)", out)]
    ok = True
    for label, root in rows:
        src = _scores(root / "eval/Source" / f"seed{seed}")["miou"]
        ada = _scores(root / "eval/AdaBN" / f"seed{seed}")["miou"]
        loss = source_val - src
        share = (ada - src) / loss if loss >= 1.0 else float("nan")  # below 1 mIoU: no loss to share
        shown = "–" if share != share else f"{share * 100:.0f} %"
        lines.append(f"| {label} | {src:.1f} | {loss:.1f} | {ada:.1f} | {shown} |")
        if root == out:
            ok = loss >= LOSS_MIN and share <= ADABN_SHARE_MAX
            verdict = (f"All parts: loss {loss:.1f} (needs ≥ {LOSS_MIN:.0f}), AdaBN recovers {share * 100:.0f} % "
                       f"(needs ≤ {ADABN_SHARE_MAX * 100:.0f} %) → {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines) + "\n\n" + verdict + "\n", ok


def table4(out: Path) -> str:
    """Markdown: Table IV on the benchmark, with the share of the Source→Oracle gap each row closes."""
    rows = ablation_rows(collect(out / "eval"))
    by_name = {r["name"]: r for r in rows}
    src, orc = by_name.get("Source"), by_name.get("Oracle")
    gap = orc["mean"] - src["mean"] if src and orc else None
    lines = ["| run | mIoU mean ± std | min | seeds | gap closed |", "|---|---|---|---|---|"]
    for r in rows:
        closed = "" if not gap else f"{(r['mean'] - src['mean']) / gap * 100 + 0.0:.0f} %"
        spread = f"{r['std']:.1f}" if r["seeds"] > 1 else "n/a"
        lines.append(f"| {r['name']} | {r['mean']:.1f} ± {spread} | {r['min']:.1f} | {r['seeds']} | {closed} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, seed: int, phase: str) -> bool:
    """Write the phase's tables (Markdown) under ``out`` and print them; True when every property holds."""
    ok = True
    texts = {}
    if phase in ("properties", "all"):
        texts["source_model.md"], ok_s = source_table(out, seed)
        texts["shift_parts.md"], ok_p = parts_table(out, seed)
        ok = ok_s and ok_p
    if phase in ("table", "all"):
        texts["table4.md"] = table4(out)
    for name, text in texts.items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
        print(f"\n## {name}\n\n{text}")
    return ok


def timing_table(spent: dict[str, float], out: Path) -> str:
    """Where the time went (this invocation; resumed steps count 0), also written to timings.json."""
    previous = read_json(out / "timings.json") if (out / "timings.json").is_file() else {}
    total = {g: round(previous.get(g, 0.0) + spent.get(g, 0.0), 1) for g in {*previous, *spent}}
    write_json(out / "timings.json", total)
    lines = ["| steps | minutes (this run) | minutes (all runs) |", "|---|---|---|"]
    for g in sorted(total, key=lambda g: -total[g]):
        lines.append(f"| {g} | {spent.get(g, 0.0) / 60:.1f} | {total[g] / 60:.1f} |")
    return "\n".join(lines)

