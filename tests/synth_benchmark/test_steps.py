"""Tests of stvm.synth_benchmark.steps: which stage calls each phase makes, the geometry rule, the
calibrated preset's phases."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stvm.errors import StvmError
from stvm.synth_benchmark import steps as plan


def _variants(steps) -> set[str]:
    return {st.argv[st.argv.index("--variant") + 1] for st in steps if st.argv[0] == "adapt"}


def test_the_benchmark_params_follow_the_papers_geometry(params) -> None:
    plan.check_geometry(params)  # full-height crops; the paper's dilations or the scaled ones
    for dil, option in (([], "crop"), ([1, 2, 2, 3], "both")):  # the paper's ratio on a 9-row map
        ts = dataclasses.replace(params.train_source, head_dilations=dil)
        plan.check_geometry(dataclasses.replace(params, train_source=ts))
        assert plan.chosen_option(dataclasses.replace(params, train_source=ts)) == option
    ts = dataclasses.replace(params.train_source, head_dilations=[6, 12, 18, 24])
    with pytest.raises(StvmError, match=r"head_dilations \[6, 12, 18, 24\] is neither \[\] .* nor \[1, 2, 2, 3\]"):
        plan.check_geometry(dataclasses.replace(params, train_source=ts))
    ad = dataclasses.replace(params.adapt, crop=32)
    with pytest.raises(StvmError, match="adapt.crop 32 != prepare.height 64"):
        plan.check_geometry(dataclasses.replace(params, adapt=ad))


def test_the_source_model_is_the_geometry_option_the_params_hold(params, tmp_path: Path) -> None:
    model = plan.source_model(tmp_path, params)
    assert model.parts[-5] == plan.chosen_option(params)
    trains = {st.done for st in plan.geometry_steps(params, tmp_path) if st.argv[0] == "train_source"}
    assert model in trains  # the model the later phases adapt is one the geometry phase trains


def test_geometry_and_shift_run_no_self_trained_variant(params, tmp_path: Path) -> None:
    steps = plan.geometry_steps(params, tmp_path) + plan.probe_steps(params, tmp_path, 0.25)
    assert _variants(steps) == {"AdaBN"}
    trains = [st for st in steps if st.argv[0] == "train_source"]
    assert len(trains) == 5 and "target/train/labels" in " ".join(trains[-1].argv)  # 4 geometry options, 1 Oracle
    opts = [" ".join(st.argv) for st in trains[:4]]
    assert "head_dilations=[]" in opts[0] and "crop=32" in opts[0]  # the old geometry: each choice undone
    assert "head_dilations=[1, 2, 2, 3]" in opts[3] and "crop=64" in opts[3]


def test_every_step_writes_its_own_output(params, tmp_path: Path) -> None:
    steps = (plan.geometry_steps(params, tmp_path) + plan.probe_steps(params, tmp_path, 0.5)
             + plan.probe_steps(params, tmp_path, 0.75) + plan.curve_steps(params, tmp_path, 0.5)
             + plan.table_steps(params, tmp_path, 0.5, 1000))
    done = [st.done for st in steps]
    assert len(set(done)) == len(done)


def test_curves_run_past_the_budget_and_the_table_at_the_given_one(params, tmp_path: Path) -> None:
    curves = plan.curve_steps(params, tmp_path, 0.5)
    assert _variants(curves) == set(plan.CURVE_VARIANTS)
    total = plan.CURVE_LENGTH * params.adapt.iterations
    assert total >= 4 * 500 and all(f"adapt.iterations={total}" in st.argv for st in curves if st.argv[0] == "adapt")
    table = plan.table_steps(params, tmp_path, 0.5, 1234)
    adapts = [st for st in table if st.argv[0] == "adapt"]
    assert len(adapts) == len(params.variants) * len(params.seeds)  # AdaBN: measured once, with the shift
    assert all("adapt.iterations=1234" in st.argv for st in adapts)
    assert {st.argv[st.argv.index("--model") + 1].split("/models/")[1] for st in table if st.argv[0] == "evaluate"
            and "/shift/" in st.argv[st.argv.index("--model") + 1]} == {"AdaBN/seed0/model.pt", "Oracle/seed0/model.pt"}


def test_calibrate_trains_the_source_model_as_the_params_say(calibrated, tmp_path: Path) -> None:
    steps = plan.calibrate_steps(calibrated, tmp_path)
    assert not _variants(steps) and not any("--set" in st.argv for st in steps if st.argv[0] != "synth")
    synth = next(st for st in steps if st.argv[0] == "synth")
    assert f"synth.shift={calibrated.synth.shift}" in synth.argv  # the params' own shift, not a probe's
    (train,) = [st for st in steps if st.argv[0] == "train_source"]
    assert train.done == plan.calibrated_source(tmp_path, calibrated)
    evals = [st for st in steps if st.argv[0] == "evaluate"]
    assert [st.argv[st.argv.index("--model") + 1] for st in evals] == [str(train.done)] * 2
    target = plan.shift_dir(tmp_path, calibrated.synth.shift) / "prepared/target"
    assert [st.argv[st.argv.index("--images") + 1] for st in evals] == [
        str(plan.source_prepared(tmp_path) / "val/images"), str(target / "val/images")]  # held-out source, target


def test_ablation_runs_every_variant_and_seed_from_the_calibrated_model(calibrated, tmp_path: Path) -> None:
    steps = plan.ablation_steps(calibrated, tmp_path)
    assert steps[:len(plan.calibrate_steps(calibrated, tmp_path))] == plan.calibrate_steps(calibrated, tmp_path)
    adapts = [st for st in steps if st.argv[0] == "adapt"]
    assert len(adapts) == 1 + len(calibrated.variants) * len(calibrated.seeds)  # AdaBN once
    assert _variants(steps) == {"AdaBN", *calibrated.variants} and len(calibrated.seeds) == 3
    source = str(plan.calibrated_source(tmp_path, calibrated))
    assert all(st.argv[st.argv.index("--source-model") + 1] == source and "--set" not in st.argv for st in adapts)
    done = [st.done for st in steps]
    assert len(set(done)) == len(done)


def test_the_paper_geometry_check_names_the_phases_that_skip_it(calibrated) -> None:
    with pytest.raises(StvmError, match=r"train_source.crop 96 != prepare.height 128.*--phase calibrate or ablation"):
        plan.check_geometry(calibrated)
