"""Fixtures for end-to-end runs: a fresh git copy of the repo with tiny params."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tiny_params() -> dict:
    """The repo's params.yaml shrunk to seconds of work (same keys: smaller numbers, and the deeplabv2_tiny
    network, 1 MB a network instead of the demo's 45 MB: what these runs check is the DAG, not the network)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["synth"].update(n_source=10, n_target_train=8, n_target_val=4, width=64, height=32, workers=1)
    p["prepare"].update(width=64, height=32, source_holdout=3, workers=1)
    if "train_source" in p:
        p["train_source"].update(arch="deeplabv2_tiny", iterations=4, crop=32, log_every=2, ckpt_every=2)
    if "adapt" in p:
        p["adapt"].update(iterations=4, crop=32, log_every=2, ckpt_every=2, ema_interval=2)
    p["seeds"] = [0]
    p["variants"] = ["ST_MT", "STvM"]  # and AdaBN, the reference, once (stage adabn)
    return p


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH; fail with its output on error."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_repo(dst: Path, params: dict | None = None) -> Path:
    """Tracked + untracked-but-not-ignored files of the repo, in a new git repo at ``dst`` with the
    tiny params (or ``params``); also used by tools/deploy.sh for its runs."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    (dst / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=dst, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], cwd=dst, check=True
    )
    return dst


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """Tracked + untracked-but-not-ignored files of the repo, in a new git repo with tiny params."""
    return copy_repo(tmp_path / "repo")


if __name__ == "__main__":  # python -m tests.pipeline.conftest DEST: a tiny copy for tools/deploy.sh
    print(copy_repo(Path(sys.argv[1])))
