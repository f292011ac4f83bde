"""The tiny DAG through real SLURM: `snakemake --profile` with workflow/profiles/slurm/config.yaml
(fitted to the one-node cluster of tools/slurm_local.sh by workflow/profiles/slurm/local.yaml),
every job an sbatch submission whose state the plugin reads back with sacct. The STvM adapt job is
stopped in the middle of its run with `scancel --signal=TERM` (what SLURM sends at a time limit): the
job fails, the profile's retry resubmits it, the rerun resumes from its checkpoint and ends with
weights bit-identical to an uninterrupted run (its loss curve: see the end of the test). (A plain `scancel` is not used: sacct then reports the state as
"CANCELLED by <uid>", which snakemake-executor-plugin-slurm 2.8.0 compares against "CANCELLED"
exactly, so it never sees the job end and the workflow waits forever.)

Needs sbatch, a running cluster and the `slurm` extra (snakemake-executor-plugin-slurm) in this venv.
On a machine without them the test skips and says so; under CI=true (where .ci/run starts the
cluster) their absence is a failure, not a skip."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from stvm.runtime import interpreter
from tests.pipeline.conftest import BIN, ROOT, run

pytestmark = pytest.mark.pipeline

ITERATIONS, CKPT_EVERY = 24, 3  # STvM long enough (tens of seconds) to be stopped between checkpoints


def _missing() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH: start a one-node cluster with `sudo tools/slurm_local.sh up` (docs/DEPLOY.md)"
    if subprocess.run(["bash", str(ROOT / "tools/slurm_local.sh"), "status"], capture_output=True).returncode != 0:
        return "SLURM is not running here: `sudo tools/slurm_local.sh up` starts it"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed in this venv: `make slurm-plugin`"
    return None


@pytest.fixture
def slurm():
    why = _missing()
    if why and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM test: {why}")
    if why:
        pytest.skip(why)


def _adapt_job() -> str | None:
    """The SLURM job id of the STvM adapt job while it runs (the plugin's comment names rule and wildcards)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        job, comment, state = line.split("|")
        if comment.startswith("rule_adapt_") and "STvM" in comment and state == "RUNNING":
            return job
    return None


def _ckpt_iteration(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return 0  # not there yet, or replaced while being read


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)

    walk("", state)
    return flat


def test_tiny_dag_runs_as_sbatch_jobs_and_a_cancelled_adapt_job_resumes_bit_identical(slurm, repo_copy, tmp_path):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["adapt"].update(iterations=ITERATIONS, ckpt_every=CKPT_EVERY, log_every=CKPT_EVERY)
    # the demo's network, not the tiny DAG's deeplabv2_tiny: its adapt steps are slow enough (tens of seconds for
    # ITERATIONS) for the job to be seen running between checkpoints; deeplabv2_tiny's take about a second in all
    params["train_source"]["arch"] = yaml.safe_load((ROOT / "params.yaml").read_text())["train_source"]["arch"]
    params["variants"] = ["STvM"]  # one trained variant is enough here (test_run.py runs ST_MT); AdaBN runs once
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([sys.executable, str(ROOT / "tools/slurm_profile.py"), "workflow/profiles/slurm/local.yaml",
         "--out", "build/slurm-local"], repo_copy)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "snakemake.log").open("w")
    proc = subprocess.Popen([str(BIN / "snakemake"), "--profile", "build/slurm-local"], cwd=repo_copy, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    ckpt = repo_copy / "results/models/STvM/seed0/ckpt/last.pt"
    cancelled, at = None, 0
    deadline = time.monotonic() + 900
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            job = None if cancelled else _adapt_job()
            if job:
                at = _ckpt_iteration(ckpt)
                if 2 * CKPT_EVERY <= at < ITERATIONS - 2 * CKPT_EVERY:
                    subprocess.run(["scancel", "--signal=TERM", job], check=True)
                    cancelled = job
            time.sleep(0.5)
        rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        log.close()
    text = (tmp_path / "snakemake.log").read_text()
    assert rc == 0, f"snakemake --profile failed ({rc}):\n{text[-6000:]}"
    assert cancelled, f"the STvM adapt job was never seen running between checkpoints:\n{text[-3000:]}"

    # every rule ran as SLURM jobs (sacct, i.e. slurmdbd, knows each one), the stopped attempt failed
    uuid = re.search(r"SLURM run ID: (\S+)", text)
    assert uuid, text[-3000:]
    jobs = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Comment", "--name", uuid.group(1),
                           "-S", "now-1hour"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in jobs.splitlines()]
    assert {c.split("_wildcards_")[0] for _, _, c in rows} == {
        f"rule_{r}" for r in ("synth", "prepare", "train_source", "adabn", "adapt", "evaluate_reference", "evaluate", "summary",
                              "report")}, jobs or text[-3000:]
    state = {j: st for j, st, _ in rows}
    assert state.pop(cancelled) == "FAILED", jobs
    assert set(state.values()) == {"COMPLETED"}, jobs

    # the retry started from the checkpoint: its progress begins past the cancelled attempt's checkpoint
    adapt_log = (repo_copy / "logs/adapt_STvM_seed0.log").read_text()
    done = [int(m) for m in re.findall(r"adapt STvM: (\d+)/%d" % ITERATIONS, adapt_log)]
    assert done and done[-1] == ITERATIONS and min(done) > at, (at, adapt_log)

    # ... and ends bit-identical to an uninterrupted run of the same command (same threads)
    info = yaml.safe_load((repo_copy / "results/models/STvM/seed0/adapt_info.json").read_text())
    assert {k: info[k] for k in ("python", "container")} == interpreter()  # the venv's python, as here
    ref = tmp_path / "ref"
    env1 = {**env, "OMP_NUM_THREADS": str(info["threads"])}
    subprocess.run([sys.executable, "-m", "stvm", "adapt", "--variant", "STvM", "--seed", "0", "--quiet",
                    "--source-model", "results/models/Source/seed0/model.pt",
                    "--target-images", "data/prepared/target/train/images", "--out", str(ref)],
                   cwd=repo_copy, env=env1, check=True, capture_output=True)
    got, want = _tensors(repo_copy / "results/models/STvM/seed0/model.pt"), _tensors(ref / "model.pt")
    assert got.keys() == want.keys()
    different = [k for k in got if not torch.equal(got[k], want[k])]
    assert not different, different[:5]
    # The curve: Snakemake deletes a failed job's outputs before the retry, plots/adapt.csv included, so
    # the resumed run's file holds the rows from its checkpoint on (header + the rows logged after it);
    # those equal the uninterrupted run's rows bit for bit. (DVC or a plain rerun keep the whole file.)
    got_rows = list(csv.reader((repo_copy / "results/models/STvM/seed0/plots/adapt.csv").open()))
    want_rows = list(csv.reader((ref / "plots/adapt.csv").open()))
    assert got_rows[0] == want_rows[0] and len(got_rows) > 1
    first = int(got_rows[1][0])
    assert first > at and got_rows[1:] == [r for r in want_rows[1:] if int(r[0]) >= first], (got_rows, want_rows)
    for name in ("Source", "AdaBN", *params["variants"]):
        assert (repo_copy / f"results/summary/{name}.json").is_file()
    assert (repo_copy / "results/report/report.html").is_file()
