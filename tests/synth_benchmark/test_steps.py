"""Tests for `stvm synth_benchmark` (stvm.synth_benchmark.steps and .phases): the phases' steps, the
geometry rule, the shift bisection, resume, failure and the tables."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from stvm.synth_benchmark import steps as benchmark
from stvm.synth_benchmark import phases
from stvm.config import load_params
from stvm.errors import StvmError

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole"]  # trainIds 0-5


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "configs/synth_benchmark/paper_geometry.yaml")


def _variants(steps) -> set[str]:
    return {st.argv[st.argv.index("--variant") + 1] for st in steps if st.argv[0] == "adapt"}


def test_the_benchmark_params_follow_the_papers_geometry(params) -> None:
    benchmark.check_geometry(params)  # full-height crops; the paper's dilations or the scaled ones
    for dil, option in (([], "crop"), ([1, 2, 2, 3], "both")):  # the paper's ratio on a 9-row map
        ts = dataclasses.replace(params.train_source, head_dilations=dil)
        benchmark.check_geometry(dataclasses.replace(params, train_source=ts))
        assert benchmark.chosen_option(dataclasses.replace(params, train_source=ts)) == option
    ts = dataclasses.replace(params.train_source, head_dilations=[6, 12, 18, 24])
    with pytest.raises(StvmError, match=r"head_dilations \[6, 12, 18, 24\] is neither \[\] .* nor \[1, 2, 2, 3\]"):
        benchmark.check_geometry(dataclasses.replace(params, train_source=ts))
    ad = dataclasses.replace(params.adapt, crop=32)
    with pytest.raises(StvmError, match="adapt.crop 32 != prepare.height 64"):
        benchmark.check_geometry(dataclasses.replace(params, adapt=ad))


def test_the_source_model_is_the_geometry_option_the_params_hold(params, tmp_path: Path) -> None:
    model = benchmark.source_model(tmp_path, params)
    assert model.parts[-5] == benchmark.chosen_option(params)
    trains = {st.done for st in benchmark.geometry_steps(params, tmp_path) if st.argv[0] == "train_source"}
    assert model in trains  # the model the later phases adapt is one the geometry phase trains


def test_geometry_and_shift_run_no_self_trained_variant(params, tmp_path: Path) -> None:
    steps = benchmark.geometry_steps(params, tmp_path) + benchmark.probe_steps(params, tmp_path, 0.25)
    assert _variants(steps) == {"AdaBN"}
    trains = [st for st in steps if st.argv[0] == "train_source"]
    assert len(trains) == 5 and "target/train/labels" in " ".join(trains[-1].argv)  # 4 geometry options, 1 Oracle
    opts = [" ".join(st.argv) for st in trains[:4]]
    assert "head_dilations=[]" in opts[0] and "crop=32" in opts[0]  # the old geometry: each choice undone
    assert "head_dilations=[1, 2, 2, 3]" in opts[3] and "crop=64" in opts[3]


def test_every_step_writes_its_own_output(params, tmp_path: Path) -> None:
    steps = (benchmark.geometry_steps(params, tmp_path) + benchmark.probe_steps(params, tmp_path, 0.5)
             + benchmark.probe_steps(params, tmp_path, 0.75) + benchmark.curve_steps(params, tmp_path, 0.5)
             + benchmark.table_steps(params, tmp_path, 0.5, 1000))
    done = [st.done for st in steps]
    assert len(set(done)) == len(done)


def test_curves_run_past_the_budget_and_the_table_at_the_given_one(params, tmp_path: Path) -> None:
    curves = benchmark.curve_steps(params, tmp_path, 0.5)
    assert _variants(curves) == set(benchmark.CURVE_VARIANTS)
    total = benchmark.CURVE_LENGTH * params.adapt.iterations
    assert total >= 4 * 500 and all(f"adapt.iterations={total}" in st.argv for st in curves if st.argv[0] == "adapt")
    table = benchmark.table_steps(params, tmp_path, 0.5, 1234)
    adapts = [st for st in table if st.argv[0] == "adapt"]
    assert len(adapts) == len(params.variants) * len(params.seeds)  # AdaBN: measured once, with the shift
    assert all("adapt.iterations=1234" in st.argv for st in adapts)
    assert {st.argv[st.argv.index("--model") + 1].split("/models/")[1] for st in table if st.argv[0] == "evaluate"
            and "/shift/" in st.argv[st.argv.index("--model") + 1]} == {"AdaBN/seed0/model.pt", "Oracle/seed0/model.pt"}


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
    assert phases.next_shift([]) == benchmark.FIRST_SHIFT
    too_harsh, too_mild = _probe(0.5, 0.2, 0.1), _probe(0.25, 0.8, 0.1)
    assert phases.next_shift([too_harsh]) == 0.25
    assert phases.next_shift([too_harsh, too_mild]) == 0.375
    assert phases.next_shift([_probe(0.5, 0.8, 0.1)]) == 0.75
    assert phases.next_shift([too_harsh, _probe(0.25, 0.55, 0.1)]) is None  # passes: frozen
    assert phases.next_shift([_probe(0.5, 0.55, 0.4)]) is None  # in range but AdaBN closes too much: no rule left
    assert phases.passes(_probe(0.5, 0.55, 0.25)) and not phases.passes(_probe(0.5, 0.55, 0.26))
    assert not phases.passes(_probe(0.5, 0.44, 0.1))


class _FakeProc:
    """A finished stage process: writes the step's outputs on start, as the real stages do on success."""

    def __init__(self, argv, rc: int) -> None:
        self.argv, self.returncode, self.terminated = argv, rc, False

    def poll(self) -> int:
        return self.returncode

    def wait(self) -> int:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True


def _fake_subprocess(monkeypatch, fail: str | None = None, log: list | None = None) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(argv, **_kw):
        calls.append(argv)
        if log is not None:
            log.append([Path(a) for a in argv if a.startswith("/")])
        if fail is not None and fail in argv:
            return _FakeProc(argv, 3)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "model.pt", "synth.json", "manifest.json"):
            (out / name).write_text("{}")
        return _FakeProc(argv, 0)

    monkeypatch.setattr(benchmark.subprocess, "Popen", fake)
    return calls


def test_run_skips_done_steps_and_resumes(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.table_steps(params, tmp_path, 0.5, 10)[:4]
    calls = _fake_subprocess(monkeypatch)
    steps[0].done.parent.mkdir(parents=True)
    steps[0].done.write_text("{}")
    spent = benchmark.run(steps, Path("p.yaml"), quiet=True)
    assert len(calls) == 3 and set(spent) == {"table"}
    assert all(c[-3:] == ["--params", "p.yaml", "--quiet"] for c in calls)
    assert benchmark.run(steps, Path("p.yaml")) == {} and len(calls) == 3


def test_a_failed_step_names_itself(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.table_steps(params, tmp_path, 0.5, 10)[:2]
    _fake_subprocess(monkeypatch, fail="adapt")
    with pytest.raises(StvmError, match="step 'adapt .* seed 0' failed"):
        benchmark.run(steps, Path("p.yaml"))


def test_steps_wait_for_the_steps_they_read(params, tmp_path: Path) -> None:
    steps = benchmark.geometry_steps(params, tmp_path)
    deps = benchmark.needs(steps)
    names = [st.name for st in steps]
    at = names.index
    assert deps[at("prepare target shift 0.5")] == {at("synth shift 0.5")}
    assert deps[at("train source (both)")] == {at("prepare source")}
    assert deps[at("target val (old)")] == {at("train source (old)"), at("prepare target shift 0.5")}
    assert at("train source (old)") not in deps[at("train source (crop)")]  # independent: may run at once


def test_parallel_steps_start_only_after_their_inputs(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.geometry_steps(params, tmp_path)
    log: list = []
    calls = _fake_subprocess(monkeypatch, log=log)
    benchmark.run(steps, Path("p.yaml"), quiet=True, jobs=2)
    assert len(calls) == len(steps)
    started = [next(st for st in steps if list(st.argv) == c[3:3 + len(st.argv)]) for c in calls]
    deps = benchmark.needs(steps)
    for k, st in enumerate(started):  # every step it reads was started (and, fake, finished) before it
        assert {steps[j].name for j in deps[steps.index(st)]} <= {s.name for s in started[:k]}


def test_a_failed_parallel_step_stops_the_others(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.geometry_steps(params, tmp_path)
    procs: list = []

    def fake(argv, **_kw):
        old = {"train_source.head_dilations=[]", "train_source.crop=32"} <= set(argv)  # the old geometry's training
        proc = _FakeProc(argv, 3 if old else None)
        procs.append(proc)
        if proc.returncode is None:  # data steps finish; the others keep running
            done = "synth" in argv or "prepare" in argv
            proc.returncode = 0 if done else None
            if done:
                out = Path(argv[argv.index("--out") + 1])
                out.mkdir(parents=True, exist_ok=True)
                (out / ("synth.json" if "synth" in argv else "manifest.json")).write_text("{}")
        return proc

    monkeypatch.setattr(benchmark.subprocess, "Popen", fake)
    with pytest.raises(StvmError, match="failed"):
        benchmark.run(steps, Path("p.yaml"), jobs=2)
    running = [p for p in procs if p.returncode is None]
    assert running and all(p.terminated for p in running)


def _eval(folder: Path, miou: float, ious: list[float], present: list[bool]) -> None:
    folder.mkdir(parents=True)
    scores = {f"iou/{n}": v for n, v in zip(NAMES, ious)} | {"miou": miou}
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "metrics.json").write_text(json.dumps({"miou": miou}))
    matrix = [[5 if here else 0] * len(NAMES) for here in present]
    (folder / "confusion.json").write_text(json.dumps({"matrix": matrix, "protocol": 19}))


def test_source_table_fails_on_a_weak_present_class_only(tmp_path: Path) -> None:
    ious = [90.0, 85.0, 70.0, 60.0, 50.0, 5.0]
    _eval(tmp_path / "source_val/Source/seed0", 60.0, ious, [True] * 5 + [False])
    text, ok = phases.source_table(tmp_path, 0)
    assert ok and "| pole |" not in text  # pole absent from source val: not held against it
    _eval(tmp_path / "source_val/Source/seed1", 60.0, ious, [True] * 6)
    text, ok = phases.source_table(tmp_path, 1)
    assert not ok and "below 10 IoU: pole" in text


def test_a_probe_reads_ratio_and_share(tmp_path: Path) -> None:
    root = benchmark.shift_dir(tmp_path, 0.5)
    for run, miou in {"Source": 30.0, "AdaBN": 35.0, "Oracle": 60.0}.items():
        _eval(root / "eval" / run / "seed0", miou, [miou] * 6, [True] * 6)
    m = phases.probe(tmp_path, 0.5, 0)
    assert m["ratio"] == 0.5 and abs(m["share"] - 5 / 30) < 1e-12 and phases.passes(m)
    assert "| 0.5 | 30.0 | 35.0 | 60.0 | 50 % | 17 % | PASS |" in phases.shift_table([m])


def test_table4_reads_the_gap_each_run_closes(tmp_path: Path) -> None:
    for run, seeds in {"Source": [20.0], "Oracle": [60.0], "STvM": [30.0, 34.0, 32.0]}.items():
        for i, miou in enumerate(seeds):
            _eval(tmp_path / "eval" / run / f"seed{i}", miou, [miou] * 6, [True] * 6)
    text = phases.table4(tmp_path)
    assert "| STvM | 32.0 ± 2.0 | 30.0 | 3 | 30 % |" in text
    assert "| Oracle | 60.0 ± n/a | 60.0 | 1 | 100 % |" in text
    assert "| road | 20.0 | 32.0 | 60.0 |" in phases.per_class(tmp_path)


def test_resume_refuses_other_params(tmp_path: Path) -> None:
    params, out = tmp_path / "a.yaml", tmp_path / "out"
    params.write_text("seeds: [0]\n")
    benchmark.check_params(params, out)
    benchmark.check_params(params, out)  # same params: resumes
    params.write_text("seeds: [0]  # a comment is no param\n")
    benchmark.check_params(params, out)
    params.write_text("seeds: [1]\n")
    with pytest.raises(StvmError, match="made with other params"):
        benchmark.check_params(params, out)


def test_a_budget_or_shift_is_fixed_once(tmp_path: Path) -> None:
    benchmark.recorded(tmp_path / "budget.json", {"iterations": 1000}, "the table's budget")
    assert benchmark.recorded(tmp_path / "budget.json", {"iterations": 1000}, "x") == {"iterations": 1000}
    with pytest.raises(StvmError, match="budget.json: the table's budget was fixed as"):
        benchmark.recorded(tmp_path / "budget.json", {"iterations": 2000}, "the table's budget")


def test_the_table_phase_needs_a_frozen_shift(params, tmp_path: Path) -> None:
    with pytest.raises(StvmError, match="frozen.json: no frozen shift yet"):
        phases.run_phase("table", params, tmp_path, Path("p.yaml"), True, 100, {})


def test_the_cost_table_gives_seconds_per_iteration(tmp_path: Path) -> None:
    for rel, its, wall in (("geometry/both/models/Source/seed0", 3000, 1500.0), ("curves/models/STvM/seed0", 0, 9.0)):
        (tmp_path / rel).mkdir(parents=True)
        kind = "train" if "Source" in rel else "adapt"
        (tmp_path / rel / f"{kind}_metrics.json").write_text(json.dumps({"iterations": its, "wall_seconds": wall}))
    text = phases.cost_table(tmp_path)
    assert "| geometry/both/models/Source/seed0 | 3000 | 1500 | 0.500 |" in text and "curves" not in text
