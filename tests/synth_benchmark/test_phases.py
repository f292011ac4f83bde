"""Tests of stvm.synth_benchmark.phases: the plateau budget, the shift bisection, the source model's
verdict, what a phase refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from stvm.errors import StvmError
from stvm.synth_benchmark import phases
from stvm.synth_benchmark import steps as plan
from tests.synth_benchmark.fakes import fake_subprocess, write_eval


def test_the_budget_is_the_first_snapshot_from_which_every_curve_stays_near_its_end() -> None:
    its = [250, 500, 750, 1000]
    flat_early = (its, [20.0, 24.0, 24.5, 24.0])  # within 1 of the end from 500
    dips_late = (its, [20.0, 26.0, 22.0, 24.0])  # 2 below its end at 750: flat only from 1000
    assert phases.plateau_budget({"a": flat_early}) == 500
    assert phases.plateau_budget({"a": flat_early, "b": dips_late}) == 1000
    assert phases.plateau_budget({"a": (its, [24.0] * 4)}) == 250
    assert phases.plateau_budget({"a": flat_early}, tol=0.1) == 1000


def test_the_budget_needs_the_curves(tmp_path: Path) -> None:
    with pytest.raises(StvmError, match="no curve for ST_MT, STvM_Raw, STvM: run --phase curves first"):
        phases.curve_means(tmp_path)


def _probe(shift: float, ratio: float, share: float) -> dict[str, float]:
    return {"shift": shift, "ratio": ratio, "share": share}


def test_the_shift_bisection() -> None:
    assert phases.next_shift([]) == plan.FIRST_SHIFT
    too_harsh, too_mild = _probe(0.5, 0.2, 0.1), _probe(0.25, 0.8, 0.1)
    assert phases.next_shift([too_harsh]) == 0.25
    assert phases.next_shift([too_harsh, too_mild]) == 0.375
    assert phases.next_shift([_probe(0.5, 0.8, 0.1)]) == 0.75
    assert phases.next_shift([too_harsh, _probe(0.25, 0.55, 0.1)]) is None  # passes: frozen
    assert phases.next_shift([_probe(0.5, 0.55, 0.4)]) is None  # in range but AdaBN closes too much: no rule left
    assert phases.passes(_probe(0.5, 0.55, 0.25)) and not phases.passes(_probe(0.5, 0.55, 0.26))
    assert not phases.passes(_probe(0.5, 0.44, 0.1))


def test_source_table_fails_on_a_weak_present_class_only(tmp_path: Path) -> None:
    ious = [90.0, 85.0, 70.0, 60.0, 50.0, 5.0]
    write_eval(tmp_path / "source_val/Source/seed0", 60.0, ious, [True] * 5 + [False])
    text, ok = phases.source_table(tmp_path, 0)
    assert ok and "| pole |" not in text  # pole absent from source val: not held against it
    write_eval(tmp_path / "source_val/Source/seed1", 60.0, ious, [True] * 6)
    text, ok = phases.source_table(tmp_path, 1)
    assert not ok and "below 10 IoU: pole" in text


def test_a_probe_reads_ratio_and_share(tmp_path: Path) -> None:
    root = plan.shift_dir(tmp_path, 0.5)
    for run, miou in {"Source": 30.0, "AdaBN": 35.0, "Oracle": 60.0}.items():
        write_eval(root / "eval" / run / "seed0", miou, [miou] * 6, [True] * 6)
    m = phases.probe(tmp_path, 0.5, 0)
    assert m["ratio"] == 0.5 and abs(m["share"] - 5 / 30) < 1e-12 and phases.passes(m)
    assert "| 0.5 | 30.0 | 35.0 | 60.0 | 50 % | 17 % | PASS |" in phases.shift_table([m])


def test_the_table_phase_needs_a_frozen_shift(params, tmp_path: Path) -> None:
    with pytest.raises(StvmError, match="frozen.json: no frozen shift yet"):
        phases.run_phase("table", params, tmp_path, Path("p.yaml"), True, 100, {})


CALIBRATED = Path(__file__).resolve().parents[2] / "configs/synth_benchmark/calibrated.yaml"


def _miou(out: Path) -> float:
    """A made-up score per run: the calibrated source model 40 on source val, each run its own level."""
    level = {"Source": 10.0, "AdaBN": 20.0, "ST": 5.0, "ST_Aug": 4.0, "ST_MT": 18.0, "STvM_Raw": 21.0, "STvM": 22.0}
    return 40.0 if "source_val" in out.parts else level[out.parent.name] + int(out.name[-1])


def test_ablation_runs_calibrate_then_every_variant_and_resumes(calibrated, tmp_path: Path, monkeypatch, capsys) -> None:
    calls = fake_subprocess(monkeypatch, miou=_miou)
    out = tmp_path / "cal"
    assert phases.run_benchmark(calibrated, CALIBRATED, out, "ablation", None, True) == 0
    assert len(calls) == len(plan.ablation_steps(calibrated, out))
    assert "| **mIoU** | **40.0** | **10.0** | **30.0** |" in (out / "calibration.md").read_text()
    table = (out / "ablation.md").read_text()
    assert "| STvM | 23.0 ± 1.0 | 22.0 | 3 |" in table and "| AdaBN | 20.0 ± n/a | 20.0 | 1 |" in table
    assert "Oracle" not in table  # the calibrated preset trains no Oracle
    assert phases.run_benchmark(calibrated, CALIBRATED, out, "ablation", None, True) == 0
    assert len(calls) == len(plan.ablation_steps(calibrated, out))  # a rerun resumes: nothing left to do
    assert phases.run_benchmark(calibrated, CALIBRATED, out, "calibrate", None, True) == 0  # calibrate: done within


def test_the_calibrated_phases_take_no_budget_and_the_paper_phases_need_the_geometry(calibrated, tmp_path: Path) -> None:
    with pytest.raises(StvmError, match="--budget sets the table phase's iterations; phase ablation reads"):
        phases.run_benchmark(calibrated, CALIBRATED, tmp_path / "o", "ablation", 100, True)
    with pytest.raises(StvmError, match="do not follow the paper's geometry"):
        phases.run_benchmark(calibrated, CALIBRATED, tmp_path / "o", "all", None, True)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_the_command_offers_every_phase_of_both_presets() -> None:
    from collections import defaultdict

    from stvm.cli_parser import build_parser

    parser = build_parser(defaultdict(lambda: lambda args: 0))
    sub = next(a for a in parser._subparsers._group_actions if a.choices).choices["synth_benchmark"]
    (phase,) = [a for a in sub._actions if a.dest == "phase"]
    assert phase.choices == ["all", *plan.PHASES, *plan.CALIBRATED_PHASES]
