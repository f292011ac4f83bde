"""tools/gpu_check.py: the GPU check's dry run on the CPU (every part, tiny sizes), its criteria,
its time budget, and its refusal to run the GPU check without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gpu_check  # noqa: E402
import gpu_parts  # noqa: E402


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, str(ROOT / "tools/gpu_check.py"), *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("gpu_check")
    proc = _run(["--dry", "--out", str(out)])
    return proc, json.loads((out / "gpu_check.json").read_text())


def test_dry_run_passes_every_part(dry_run):
    proc, summary = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(summary["parts"]) == gpu_check.parts_of(gpu_check.DRY)
    assert summary["ok"] and all(r["ok"] for r in summary["parts"].values())
    assert "| deeplabv2_r18 |" in proc.stdout and "PASSED" in proc.stdout


def test_dry_run_figures(dry_run):
    parts = dry_run[1]["parts"]
    unit = parts["unit"]  # the cpu variants ran, every cuda variant was skipped (no GPU here)
    assert unit["passed"] >= 7 and unit["skipped"] == unit["tests"] - unit["passed"] > 0 and unit["failures"] == 0
    chain = parts["chain"]
    assert set(chain["stages"]) == {name for name, _ in gpu_parts.chain_commands(Path("w"), Path("p"))}
    assert chain["missing"] == [] and all(0.0 <= v <= 100.0 for v in chain["miou"].values())
    rows = parts["numerics"]["rows"]
    assert set(rows) == {"chain Source (trained)", "deeplabv2_r18 (random init)"}
    assert all(0.0 <= r["rel_max_diff"] < 1.0 and 0.5 < r["argmax_agree"] <= 1.0 for r in rows.values())
    bench = parts["bench:deeplabv2_r18"]
    adapt = bench["adapt"]
    assert bench["train"]["gflop_per_step"] > 0 and adapt["STvM"]["gflop_per_step"] > adapt["ST_MT"]["gflop_per_step"]
    assert bench["eval_single_ips"] > bench["eval_mst_ips"] > 0  # MST: 6 passes per image
    assert bench["train"]["peak_gpu_gib"] is None  # no GPU memory figure on the CPU


def test_gpu_mode_without_cuda_is_a_one_line_error(tmp_path):
    proc = _run(["--out", str(tmp_path / "o")], CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--dry" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_part_over_budget_is_reported_as_timed_out(tmp_path):
    # budget 1 s: the child's own chain budget is at least 1 s after its start-up, so the parent's
    # hard limit always fires first (with 2 s the child sometimes stopped itself just in time)
    res = gpu_check.run_part("chain", True, tmp_path, budget=1)
    assert not res["ok"] and "timed out after 1 s" in res["error"]


def test_numerics_criteria():
    ref = torch.zeros(1, 3, 10, 10)
    ref[:, 0], ref[:, 1] = 1.0, 0.98
    row = gpu_parts.compare_logits(ref, ref.clone())
    assert row["max_abs_diff"] == 0 and row["argmax_agree"] == 1.0 and gpu_parts.numerics_pass(row, True)
    test = ref.clone()
    test[0, 1, 0, 0] = 1.02  # one pixel of 100 changes its argmax; the diff (4 %) is within tolerance
    row = gpu_parts.compare_logits(ref, test)
    assert row["argmax_agree"] == pytest.approx(0.99) and gpu_parts.numerics_pass(row, True)
    test[0, 1, 0, 1] = 1.02  # two pixels: below 99 %
    row = gpu_parts.compare_logits(ref, test)
    assert not gpu_parts.numerics_pass(row, True) and gpu_parts.numerics_pass(row, False)
    test[0, 2, 5, 5] = 0.06  # 6 % of max |logit|: over the tolerance
    assert not gpu_parts.numerics_pass(gpu_parts.compare_logits(ref, test), False)


def test_bench_ok_needs_positive_figures_on_the_gpu():
    run = {"it_per_s": 2.0, "tflops": 1.0, "peak_gpu_gib": 3.0}
    res = {"train": run, "adapt": {"STvM": run, "ST_MT": {**run, "it_per_s": -1.0}, "STvM_over_ST_MT": 1.2},
           "eval_single_ips": 3.0, "eval_mst_ips": 0.5}
    assert not gpu_parts.bench_ok(res, positive=True)
    res["adapt"]["ST_MT"]["it_per_s"] = 1.5
    assert gpu_parts.bench_ok(res, positive=True)
    res["adapt"]["error"] = "OutOfMemoryError"
    assert not gpu_parts.bench_ok(res, positive=True)
