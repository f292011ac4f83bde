"""Editing code reruns exactly the stages that import it, in both DAG tools (tiny run in a temp copy)."""

from __future__ import annotations

import json
import re

import pytest

from stvm.deps import stage_code
from tests.pipeline.conftest import run

pytestmark = pytest.mark.pipeline


def stage_names(repo) -> dict[str, str]:
    """DVC stage name (e.g. ``adapt@STvM-0``) -> the stvm command it runs."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return {s.name: re.search(r"python -m stvm (\w+)", s.cmd).group(1) for s in r.index.stages}


def snakemake_reasons(out: str) -> dict[str, list[str]]:
    """Rule name -> the 'reason:' line of each job a dry run lists."""
    reasons: dict[str, list[str]] = {}
    rule = None
    for line in out.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line.strip()):
            rule = m.group(1)
        elif line.strip().startswith("reason:") and rule:
            reasons.setdefault(rule, []).append(line.strip())
    return reasons


def test_changing_a_shared_loop_function_reruns_train_source_and_every_adapt_stage(repo_copy):
    """set_poly_lr lives in stvm/training.py, which both loops import (the issue's stvm/train.py case
    before train and adapt stopped importing each other)."""
    run(["dvc", "repro", "--quiet", "adapt"], repo_copy)
    models = sorted(str(p.relative_to(repo_copy)) for p in repo_copy.glob("results/models/*/seed*/model.pt"))
    run(["snakemake", "--touch", "--cores", "1", *models], repo_copy)
    names = stage_names(repo_copy)
    assert json.loads(run(["dvc", "status", "--json", "adapt"], repo_copy).stdout) == {}

    train = repo_copy / "stvm/training.py"
    text = train.read_text()
    train.write_text(text.replace('    return opt.param_groups[0]["lr"]\n', '    lr = opt.param_groups[0]["lr"]\n    return lr\n', 1))
    assert train.read_text() != text

    status = json.loads(run(["dvc", "status", "--json"], repo_copy).stdout)
    importers = {n for n, cmd in names.items() if "stvm/training.py" in stage_code(cmd)}
    assert {n for n in names if n.startswith(("train_source", "adapt"))} <= importers  # both loops import it
    for name in importers:
        assert any(c.get("changed deps", {}).get("stvm/training.py") == "modified" for c in status.get(name, [])
                   if isinstance(c, dict)), f"{name} not out of date: {status.get(name)}"
    for name in set(names) - importers:  # e.g. evaluate: its own deps did not change
        assert not any(isinstance(c, dict) and "stvm/training.py" in c.get("changed deps", {})
                       for c in status.get(name, []))

    dry = run(["snakemake", "-n", "--cores", "1", *models], repo_copy)
    reasons = snakemake_reasons(dry.stdout + dry.stderr)
    n_adapt = sum(1 for n in names if n.startswith("adapt"))
    assert len(reasons.get("adapt", [])) == n_adapt and len(reasons.get("train_source", [])) == 1, reasons
    assert "stvm/training.py" in reasons["train_source"][0]
    # with train_source held back, adapt is still out of date, for its own code dependency
    dry = run(["snakemake", "-n", "--cores", "1", "--allowed-rules", "adapt", "--",
                *[m for m in models if "/Source/" not in m]], repo_copy)
    reasons = snakemake_reasons(dry.stdout + dry.stderr)
    assert len(reasons.get("adapt", [])) == n_adapt and all("stvm/training.py" in r for r in reasons["adapt"]), reasons
