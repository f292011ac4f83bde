"""tools/deploy.sh, tools/slurm_local.sh, tools/apptainer_sid.sh, tools/docker_base.sh: a missing
Docker engine, apptainer or sbatch is one line naming it and how to get it, exit 2 (no engine,
apptainer or cluster is needed for these checks: the tools are hidden from PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASICS = ["bash", "sh", "sed", "dirname", "mkdir", "cat", "id", "readlink", "stat", "cut", "grep", "rm", "awk"]


def bare_path(tmp_path: Path, extra: dict[str, str] | None = None) -> str:
    """A PATH with the basic tools only, plus fake commands ``extra`` (name: shell body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASICS:
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, body in (extra or {}).items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


FAKE_DOCKER = {"docker": "exit 0"}  # answers `docker info`, so the next missing tool is reached


@pytest.mark.parametrize("cmd, extra, missing", [
    (["tools/deploy.sh", "image"], {}, "no 'docker' command"),
    (["tools/deploy.sh", "image"], {"docker": "exit 1"}, "Docker engine does not answer"),
    (["tools/deploy.sh", "sif"], FAKE_DOCKER, "no 'apptainer' command"),
    (["tools/deploy.sh", "apptainer"], {}, "no 'apptainer' command"),
    (["tools/deploy.sh", "slurm"], {}, "no 'sbatch' command"),
    (["tools/docker_base.sh"], {}, "'docker' not found"),
    (["tools/apptainer_sid.sh", "exec", "--version"], {}, "no apptainer in"),
    (["tools/bin/apptainer", "--version"], {}, "no apptainer in"),
])
def test_a_missing_tool_is_one_line_and_exit_2(tmp_path, cmd, extra, missing):
    env = {"PATH": bare_path(tmp_path, extra), "PYTHON": sys.executable, "HOME": str(tmp_path),
           "STVM_APPTAINER_ROOT": str(tmp_path / "no-sid"), "DEPLOY_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], proc.stderr
    assert "install" in lines[0] or "start" in lines[0] or "setup" in lines[0]  # says how to get it


def test_slurm_local_status_is_one_line_and_exit_1_without_a_cluster(tmp_path):
    proc = subprocess.run(["bash", "tools/slurm_local.sh", "status"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": bare_path(tmp_path)})
    assert proc.returncode == 1 and proc.stdout.strip() == "slurm_local.sh: not running", proc


def test_slurm_local_up_needs_root():
    script = ROOT / "tools/slurm_local.sh"
    cmd, cwd = ["bash", str(script), "up"], ROOT
    if os.getuid() == 0:  # as root `up` would start the daemons: try it as an unprivileged user instead,
        cwd = Path(tempfile.mkdtemp())  # from a copy that user can read (the checkout may lie under /root)
        cwd.chmod(0o755)
        shutil.copy(script, cwd / "slurm_local.sh")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "slurm_local.sh", "up"]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    finally:
        if cwd != ROOT:
            shutil.rmtree(cwd)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("run it with sudo") and "needs root" in proc.stderr, proc
