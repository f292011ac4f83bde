"""Learning-curve snapshots: written by both loops at the listed iterations (stvm.training), scored by
evaluate into curve.json, drawn by the report (stvm.report.curves); never read back by adapt."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from stvm.adapt.loop import adapt
from stvm.config import EvaluateParams
from stvm.errors import StvmError
from stvm.evaluate.stage import evaluate_stage
from stvm.report.curves import collect_curves, curve_figure, read_curve, seed_band
from stvm.train import train_source
from stvm.training import load_checkpoint, reset_snapshots, snapshot_iteration, snapshot_path
from tests.fixtures.tiny import adapt_params, source_model_and_target, train_params, write_prepared


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("snap")
    model, target = source_model_and_target(root)
    val = write_prepared(root / "val", n=2)
    return root, model, target, val


def _adapt(tiny, out: Path, **kw):
    _, model, target, _ = tiny
    stop = kw.pop("stop_after", None)
    return adapt(adapt_params(**kw), variant="STvM", source_model=model, target_images=target, out=out, seed=0,
                 device="cpu", show_progress=False, stop_after=stop)


def test_adapt_writes_the_evaluated_network_at_each_snapshot(tiny, tmp_path):
    _adapt(tiny, tmp_path / "a", iterations=6, snapshots=[2, 4])
    files = sorted((tmp_path / "a/snapshots").iterdir())
    assert [snapshot_iteration(f) for f in files] == [2, 4]
    snap, final = load_checkpoint(files[1]), load_checkpoint(tmp_path / "a/model.pt")
    assert snap["iteration"] == 4 and snap["variant"] == "STvM" and "metric_head" in snap
    assert any(not torch.equal(snap["model"][k], final["model"][k]) for k in final["model"])


def test_snapshots_are_the_same_after_a_kill_and_resume(tiny, tmp_path):
    _adapt(tiny, tmp_path / "full", iterations=6, snapshots=[2, 5])
    _adapt(tiny, tmp_path / "cut", iterations=6, snapshots=[2, 5], stop_after=3)
    assert [snapshot_iteration(f) for f in (tmp_path / "cut/snapshots").iterdir()] == [2]
    _adapt(tiny, tmp_path / "cut", iterations=6, snapshots=[2, 5])
    for it in (2, 5):
        a, b = (load_checkpoint(snapshot_path(tmp_path / d, it))["model"] for d in ("full", "cut"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_fresh_run_leaves_no_stale_snapshot_and_keeps_foreign_files(tiny, tmp_path):
    _adapt(tiny, tmp_path / "a", iterations=6, snapshots=[2, 4])
    (tmp_path / "a/snapshots/notes.txt").write_text("mine")
    _adapt(tiny, tmp_path / "a", iterations=6, snapshots=[3], lr=5e-3)  # another run in the same folder
    assert sorted(f.name for f in (tmp_path / "a/snapshots").iterdir()) == ["it000003.pt", "notes.txt"]


def test_reset_snapshots_touches_only_files_named_as_snapshots(tmp_path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    for name in ("it000001.pt", "it000009.pt", "it9.pt", "itabcdef.pt", "model.pt"):
        (folder / name).write_text("x")
    reset_snapshots(tmp_path, 1)
    assert sorted(f.name for f in folder.iterdir()) == ["it000001.pt", "it9.pt", "itabcdef.pt", "model.pt"]


def test_train_source_writes_snapshots(tmp_path):
    src = write_prepared(tmp_path / "src")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_source(train_params(iterations=4, snapshots=[1, 3]), images=src[0], labels=src[1], out=tmp_path / "s",
                     protocol=19, seed=0, device="cpu", show_progress=False)
    assert sorted(f.name for f in (tmp_path / "s/snapshots").iterdir()) == ["it000001.pt", "it000003.pt"]
    assert load_checkpoint(tmp_path / "s/snapshots/it000003.pt")["stage"] == "train_source"


@pytest.mark.parametrize("snaps", [[0], [7], [3, 2], [2, 2]])
def test_snapshot_lists_are_validated(snaps):
    with pytest.raises(StvmError, match="adapt.snapshots: expected increasing iterations in \\[1, 6\\]"):
        adapt_params(iterations=6, snapshots=snaps)


def test_evaluate_scores_every_snapshot_into_curve_json(tiny, tmp_path):
    _, _, _, (images, labels) = tiny
    _adapt(tiny, tmp_path / "a", iterations=6, snapshots=[2, 4])
    m = evaluate_stage(EvaluateParams(maps=0), model_path=tmp_path / "a/model.pt", images=images, labels=labels,
                       out=tmp_path / "e", device="cpu", show_progress=False)
    curve = json.loads((tmp_path / "e/curve.json").read_text())
    assert [p["iteration"] for p in curve["points"]] == [2, 4, 6] and curve["final_iteration"] == 6
    assert curve["points"][-1]["miou"] == m["miou"]
    snap = evaluate_stage(EvaluateParams(maps=0), model_path=tmp_path / "a/snapshots/it000002.pt", images=images,
                          labels=labels, out=tmp_path / "e2", device="cpu", show_progress=False)
    assert curve["points"][0]["miou"] == snap["miou"]  # scored as the snapshot alone would be
    assert json.loads((tmp_path / "e2/curve.json").read_text())["points"] == []  # a snapshot has none of its own


def test_every_run_has_the_outputs_the_dag_lists_even_without_snapshots(tiny, tmp_path):
    """snapshots/ and curve.json are DVC and Snakemake outputs: they exist, empty, when none is asked for."""
    _, _, _, (images, labels) = tiny
    _adapt(tiny, tmp_path / "a", iterations=2)
    assert list((tmp_path / "a/snapshots").iterdir()) == []
    evaluate_stage(EvaluateParams(maps=0), model_path=tmp_path / "a/model.pt", images=images, labels=labels,
                   out=tmp_path / "e", device="cpu", show_progress=False)
    assert json.loads((tmp_path / "e/curve.json").read_text())["points"] == []
    assert collect_curves({"eval/STvM/seed0": tmp_path / "e/metrics.json"}) == {}  # nothing to draw


def _curve_file(folder: Path, points: list[tuple[int, float]]) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "curve.json").write_text(json.dumps({"points": [{"iteration": i, "miou": v} for i, v in points]}))


def test_the_band_is_the_spread_over_seeds(tmp_path):
    _curve_file(tmp_path / "eval/STvM/seed0", [(10, 20.0), (20, 30.0)])
    _curve_file(tmp_path / "eval/STvM/seed1", [(10, 24.0), (20, 26.0), (30, 1.0)])
    files = {f"eval/STvM/seed{s}": tmp_path / f"eval/STvM/seed{s}/metrics.json" for s in (0, 1)}
    curves = collect_curves(files)
    assert seed_band(curves["STvM"]) == ([10, 20], [22.0, 28.0], [20.0, 26.0], [24.0, 30.0])


def test_the_figure_draws_the_band_and_the_levels(tmp_path):
    curves = {"STvM": {0: [(10, 20.0), (20, 30.0)], 1: [(10, 24.0), (20, 40.0)]}}
    colour = lambda run: (200, 0, 0) if run == "STvM" else (0, 0, 200)  # noqa: E731
    with_band = curve_figure(curves, {"Oracle": 35.0}, colour)
    assert with_band is not None and "oracle model selection" in with_band.caption
    import cv2

    img = cv2.imdecode(np.frombuffer(with_band.png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    tinted = ((img[..., 0] > 220) & (img[..., 1] < 215) & (img[..., 1] > 150)).sum()  # the 25 % red fill
    blue = ((img[..., 2] > 150) & (img[..., 0] < 60)).sum()  # the Oracle line
    assert tinted > 500 and blue > 100
    one_seed = curve_figure({"STvM": {0: [(10, 20.0), (20, 30.0)]}}, {}, colour)
    img1 = cv2.imdecode(np.frombuffer(one_seed.png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert ((img1[..., 0] > 220) & (img1[..., 1] < 215) & (img1[..., 1] > 150)).sum() < tinted / 5
    assert curve_figure({}, {"Oracle": 35.0}, colour) is None


def test_a_malformed_curve_file_names_itself(tmp_path):
    (tmp_path / "curve.json").write_text(json.dumps({"points": [{"iteration": 1}]}))
    with pytest.raises(StvmError, match="curve.json: not an stvm curve file"):
        read_curve(tmp_path / "curve.json")
