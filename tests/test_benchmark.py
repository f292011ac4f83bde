"""Tests for `stvm benchmark` (stvm.benchmark): its plan, resume, failure and tables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stvm import benchmark
from stvm.config import SHIFT_PART_NAMES, load_params
from stvm.errors import StvmError

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole"]  # trainIds 0-5


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "configs/benchmark.yaml")


def test_properties_run_no_adaptation_variant_but_adabn(params, tmp_path: Path) -> None:
    steps = benchmark.plan(params, tmp_path, "properties")
    adapted = {st.argv[st.argv.index("--variant") + 1] for st in steps if st.argv[0] == "adapt"}
    assert adapted == {"AdaBN"}
    per_part = [st for st in steps if st.argv[0] == "adapt"]
    assert len(per_part) == len(SHIFT_PART_NAMES) + 2  # each part alone, none, and all
    assert any(st.name == "train oracle on target labels" and "target/train/labels" in " ".join(st.argv) for st in steps)


def test_table_phase_runs_every_variant_and_seed_then_the_report(params, tmp_path: Path) -> None:
    steps = benchmark.plan(params, tmp_path, "table")
    assert len(steps) == 2 * len(params.variants) * len(params.seeds) + 1 and steps[-1].name == "report"
    every = benchmark.plan(params, tmp_path, "all")
    assert every == benchmark.plan(params, tmp_path, "properties") + steps
    done = [st.done for st in every]
    assert len(set(done)) == len(done) - 2  # AdaBN seed 0 on the benchmark: measured with the properties


def _fake_subprocess(monkeypatch, fail: str | None = None) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(argv, **_kw):
        calls.append(argv)
        if fail is not None and fail in argv:
            return subprocess.CompletedProcess(argv, 3)
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "model.pt", "synth.json", "manifest.json", "report.md"):
            (out / name).write_text("{}")
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(benchmark.subprocess, "run", fake)
    return calls


def test_run_skips_done_steps_and_resumes(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.plan(params, tmp_path, "table")[:4]
    calls = _fake_subprocess(monkeypatch)
    steps[0].done.parent.mkdir(parents=True)
    steps[0].done.write_text("{}")
    spent = benchmark.run(steps, Path("p.yaml"), quiet=True)
    assert len(calls) == 3 and set(spent) == {"table"}
    assert all(c[-3:] == ["--params", "p.yaml", "--quiet"] for c in calls)
    assert benchmark.run(steps, Path("p.yaml")) == {} and len(calls) == 3


def test_a_failed_step_names_itself(params, tmp_path: Path, monkeypatch) -> None:
    steps = benchmark.plan(params, tmp_path, "table")[:2]
    _fake_subprocess(monkeypatch, fail="adapt")
    with pytest.raises(StvmError, match="step 'adapt .* seed 0' failed"):
        benchmark.run(steps, Path("p.yaml"))


def _eval(folder: Path, miou: float, ious: list[float], present: list[bool]) -> None:
    folder.mkdir(parents=True)
    scores = {f"iou/{n}": v for n, v in zip(NAMES, ious)} | {"miou": miou}
    (folder / "scores.json").write_text(json.dumps(scores))
    matrix = [[5 if here else 0] * len(NAMES) for here in present]
    (folder / "confusion.json").write_text(json.dumps({"matrix": matrix, "protocol": 19}))


def test_source_table_fails_on_a_weak_present_class_only(tmp_path: Path) -> None:
    ious = [90.0, 85.0, 70.0, 60.0, 50.0, 5.0]
    _eval(tmp_path / "source_val/Source/seed0", 60.0, ious, [True] * 5 + [False])
    _eval(tmp_path / "eval/Source/seed0", 20.0, [40.0, 10.0, 0.0, 0.0, 0.0, 0.0], [True] * 6)
    text, ok = benchmark.source_table(tmp_path, 0)
    assert ok and "| pole | 5.0 | 0.0 |" in text  # pole absent from source val: not held against it
    _eval(tmp_path / "source_val/Source/seed1", 60.0, ious, [True] * 6)
    _eval(tmp_path / "eval/Source/seed1", 20.0, [40.0, 10.0, 0.0, 0.0, 0.0, 0.0], [True] * 6)
    text, ok = benchmark.source_table(tmp_path, 1)
    assert not ok and "below 10 IoU: pole" in text


@pytest.mark.parametrize("source, adabn, ok", [(30.0, 40.0, True), (30.0, 50.0, False), (45.0, 46.0, False)])
def test_parts_table_checks_loss_and_adabn_share(tmp_path: Path, source: float, adabn: float, ok: bool) -> None:
    _eval(tmp_path / "source_val/Source/seed0", 60.0, [60.0] * 6, [True] * 6)
    for root in [tmp_path / "parts" / p for p in ("none", *SHIFT_PART_NAMES)] + [tmp_path]:
        _eval(root / "eval/Source/seed0", source, [source] * 6, [True] * 6)
        _eval(root / "eval/AdaBN/seed0", adabn, [adabn] * 6, [True] * 6)
    text, passed = benchmark.parts_table(tmp_path, 0)
    share = (adabn - source) / (60.0 - source) * 100
    assert passed is ok and f"| all parts (benchmark) | {source:.1f} | {60.0 - source:.1f} | {adabn:.1f} | {share:.0f} % |" in text


def test_table4_reads_the_gap_each_run_closes(tmp_path: Path) -> None:
    for run, seeds in {"Source": [20.0], "Oracle": [60.0], "STvM": [30.0, 34.0, 32.0]}.items():
        for i, miou in enumerate(seeds):
            folder = tmp_path / "eval" / run / f"seed{i}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"miou": miou}))
    text = benchmark.table4(tmp_path)
    assert "| STvM | 32.0 ± 2.0 | 30.0 | 3 | 30 % |" in text
    assert "| Oracle | 60.0 ± n/a | 60.0 | 1 | 100 % |" in text


def test_resume_refuses_other_params(tmp_path: Path) -> None:
    params, out = tmp_path / "a.yaml", tmp_path / "out"
    params.write_text("seeds: [0]\n")
    benchmark.check_params(params, out)
    benchmark.check_params(params, out)  # same params: resumes
    params.write_text("seeds: [1]\n")
    with pytest.raises(StvmError, match="made with other params"):
        benchmark.check_params(params, out)
