"""Tests of stvm.synth_benchmark.runner: resume, order, parallel steps, failure, the records a run keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from stvm.errors import StvmError
from stvm.synth_benchmark import runner
from stvm.synth_benchmark import steps as plan
from tests.synth_benchmark.fakes import FakeProc, fake_subprocess


def test_run_skips_done_steps_and_resumes(params, tmp_path: Path, monkeypatch) -> None:
    steps = plan.table_steps(params, tmp_path, 0.5, 10)[:4]
    calls = fake_subprocess(monkeypatch)
    steps[0].done.parent.mkdir(parents=True)
    steps[0].done.write_text("{}")
    spent = runner.run(steps, Path("p.yaml"), quiet=True)
    assert len(calls) == 3 and set(spent) == {"table"}
    assert all(c[-3:] == ["--params", "p.yaml", "--quiet"] for c in calls)
    assert runner.run(steps, Path("p.yaml")) == {} and len(calls) == 3


def test_a_failed_step_names_itself(params, tmp_path: Path, monkeypatch) -> None:
    steps = plan.table_steps(params, tmp_path, 0.5, 10)[:2]
    fake_subprocess(monkeypatch, fail="adapt")
    with pytest.raises(StvmError, match="step 'adapt .* seed 0' failed"):
        runner.run(steps, Path("p.yaml"))


def test_parallel_steps_start_only_after_their_inputs(params, tmp_path: Path, monkeypatch) -> None:
    steps = plan.geometry_steps(params, tmp_path)
    log: list = []
    calls = fake_subprocess(monkeypatch, log=log)
    runner.run(steps, Path("p.yaml"), quiet=True, jobs=2)
    assert len(calls) == len(steps)
    started = [next(st for st in steps if list(st.argv) == c[3:3 + len(st.argv)]) for c in calls]
    deps = runner.needs(steps)
    for k, st in enumerate(started):  # every step it reads was started (and, fake, finished) before it
        assert {steps[j].name for j in deps[steps.index(st)]} <= {s.name for s in started[:k]}


def test_a_failed_parallel_step_stops_the_others(params, tmp_path: Path, monkeypatch) -> None:
    steps = plan.geometry_steps(params, tmp_path)
    procs: list = []

    def fake(argv, **_kw):
        old = {"train_source.head_dilations=[]", "train_source.crop=32"} <= set(argv)  # the old geometry's training
        proc = FakeProc(argv, 3 if old else None)
        procs.append(proc)
        if proc.returncode is None:  # data steps finish; the others keep running
            done = "synth" in argv or "prepare" in argv
            proc.returncode = 0 if done else None
            if done:
                out = Path(argv[argv.index("--out") + 1])
                out.mkdir(parents=True, exist_ok=True)
                (out / ("synth.json" if "synth" in argv else "manifest.json")).write_text("{}")
        return proc

    monkeypatch.setattr(runner.subprocess, "Popen", fake)
    with pytest.raises(StvmError, match="failed"):
        runner.run(steps, Path("p.yaml"), jobs=2)
    running = [p for p in procs if p.returncode is None]
    assert running and all(p.terminated for p in running)


def test_resume_refuses_other_params(tmp_path: Path) -> None:
    params, out = tmp_path / "a.yaml", tmp_path / "out"
    params.write_text("seeds: [0]\n")
    runner.check_params(params, out)
    runner.check_params(params, out)  # same params: resumes
    params.write_text("seeds: [0]  # a comment is no param\n")
    runner.check_params(params, out)
    params.write_text("seeds: [1]\n")
    with pytest.raises(StvmError, match="made with other params"):
        runner.check_params(params, out)


def test_a_budget_or_shift_is_fixed_once(tmp_path: Path) -> None:
    runner.recorded(tmp_path / "budget.json", {"iterations": 1000}, "the table's budget")
    assert runner.recorded(tmp_path / "budget.json", {"iterations": 1000}, "x") == {"iterations": 1000}
    with pytest.raises(StvmError, match="budget.json: the table's budget was fixed as"):
        runner.recorded(tmp_path / "budget.json", {"iterations": 2000}, "the table's budget")


def test_steps_wait_for_the_steps_they_read(params, tmp_path: Path) -> None:
    steps = plan.geometry_steps(params, tmp_path)
    deps = runner.needs(steps)
    names = [st.name for st in steps]
    at = names.index
    assert deps[at("prepare target shift 0.5")] == {at("synth shift 0.5")}
    assert deps[at("train source (both)")] == {at("prepare source")}
    assert deps[at("target val (old)")] == {at("train source (old)"), at("prepare target shift 0.5")}
    assert at("train source (old)") not in deps[at("train source (crop)")]  # independent: may run at once


def test_a_folder_no_run_made_is_refused(tmp_path: Path) -> None:
    params, out = tmp_path / "a.yaml", tmp_path / "mine"
    params.write_text("seeds: [0]\n")
    out.mkdir()
    (out / "notes.txt").write_text("a user's file")
    with pytest.raises(StvmError, match="mine: not empty and not a synth_benchmark run"):
        runner.check_params(params, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    runner.check_params(params, tmp_path / "empty")  # a new folder: made, stamped
    assert (tmp_path / "empty/params.yaml").read_text() == "seeds: [0]\n"
