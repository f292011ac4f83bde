"""End-to-end: `dvc repro` and `snakemake --cores 2` on the tiny synthetic benchmark."""

from __future__ import annotations

import json

import pytest
import yaml

from stvm.adapt.loop import PLOT_COLUMNS
from tests.pipeline.conftest import run

pytestmark = pytest.mark.pipeline


def output_hashes(repo) -> dict[str, str]:
    """md5 of every output in dvc.lock except metrics, info files and the report (they record wall time)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])
            if not o["path"].endswith(("metrics.json", "_info.json")) and o["path"] != "results/report"}


def test_dvc_repro_runs_the_whole_chain_and_is_reproducible(repo_copy):
    proc = run(["dvc", "repro"], repo_copy)
    shown_progress = proc.stdout + proc.stderr  # each stage's progress lines (rate, ETA) reach dvc's output
    for line in ("train_source: 4/4 (100%)", "adapt STvM: 4/4 (100%)", "evaluate: 4/4 (100%)"):
        assert line in shown_progress and "it/s" in shown_progress, line
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo_copy).stdout)
    text = json.dumps(shown)
    assert "results/summary/STvM.json" in text and "results/summary/Source.json" in text
    assert "results/eval/STvM/seed0/metrics.json" not in text  # per-seed files are outputs, not metrics
    metrics = json.loads((repo_copy / "results/eval/STvM/seed0/metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 100.0 and all(isinstance(v, (int, float)) for v in metrics.values())
    assert "iou/road" in json.loads((repo_copy / "results/eval/STvM/seed0/scores.json").read_text())
    table = run(["dvc", "metrics", "show"], repo_copy).stdout
    assert max(map(len, table.splitlines())) <= 200, table  # readable: numbers only, one row per file
    assert "results/summary/Source.json" in table and "miou_mean" in table
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo_copy).stdout)["data"]
    drawn = {k for k, v in plots.items() if v and v[0].get("type") == "vega" and v[0]["content"]["data"]["values"]}
    for col in PLOT_COLUMNS[1:]:  # every logged column of every self-trained run, and the source loss
        assert f"results/models/STvM/seed0/plots/adapt/{col}.tsv" in drawn, (col, sorted(plots))
    assert "results/models/Source/seed0/plots/train/loss.tsv" in drawn
    assert not [line for line in shown_progress.splitlines() if "WARNING" in line]  # e.g. DVC on an empty output
    manifest = json.loads((repo_copy / "data/prepared/source/manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 7 and manifest["splits"]["val"]["count"] == 3
    lock = output_hashes(repo_copy)
    assert "nothing to reproduce" in run(["dvc", "repro"], repo_copy).stdout.lower() or \
        "up to date" in run(["dvc", "status"], repo_copy).stdout.lower()
    # same seed, fresh outputs -> identical output hashes
    run(["dvc", "repro", "--force", "--quiet"], repo_copy)
    assert output_hashes(repo_copy) == lock


def test_snakemake_runs_the_same_outputs(repo_copy):
    run(["snakemake", "--cores", "2", "--quiet"], repo_copy)
    log = (repo_copy / "logs/adapt_STvM_seed0.log").read_text()
    assert "adapt STvM: 4/4 (100%)" in log and "ETA" in log and len(log.splitlines()) < 40
    for name in ("Source", "AdaBN", "ST_MT", "STvM"):
        metrics = json.loads((repo_copy / f"results/eval/{name}/seed0/metrics.json").read_text())
        assert "miou" in metrics
        assert json.loads((repo_copy / f"results/summary/{name}.json").read_text())["seeds"] == 1
