"""End-to-end: `dvc repro` and `snakemake --cores 2` on the tiny synthetic benchmark."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline.conftest import run

pytestmark = pytest.mark.pipeline


def output_hashes(repo) -> dict[str, str]:
    """md5 of every output in dvc.lock except the metrics files and the report (they record wall time)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])
            if not o["path"].endswith("metrics.json") and o["path"] != "results/report"}


def test_dvc_repro_runs_the_whole_chain_and_is_reproducible(repo_copy):
    run(["dvc", "repro", "--quiet"], repo_copy)
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo_copy).stdout)
    text = json.dumps(shown)
    assert "results/eval/Source/seed0/metrics.json" in text and "results/eval/STvM/seed0/metrics.json" in text
    metrics = json.loads((repo_copy / "results/eval/STvM/seed0/metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 100.0 and "iou/road" in metrics
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
    for name in ("Source", "AdaBN", "ST_MT", "STvM"):
        metrics = json.loads((repo_copy / f"results/eval/{name}/seed0/metrics.json").read_text())
        assert "miou" in metrics
