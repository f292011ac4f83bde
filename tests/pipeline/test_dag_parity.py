"""dvc.yaml and the Snakefile describe the same DAG: same resolved commands, same outputs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.pipeline.conftest import run


def dvc_commands(repo: Path) -> set[str]:
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return {" ".join(s.cmd.split()) for s in r.index.stages if getattr(s, "cmd", None)}


def snakemake_commands(repo: Path) -> set[str]:
    proc = run(["snakemake", "-n", "-p", "--cores", "1", "--forceall"], repo)
    out = proc.stdout + proc.stderr
    cmds = set()
    for line in out.splitlines():
        line = line.strip().removeprefix("Shell command:").strip()
        if line.startswith("python -m stvm"):
            cmds.add(" ".join(re.sub(r"\s*2>\s*\S+$", "", line).split()))
    return cmds


def test_dvc_and_snakemake_run_the_same_commands(repo_copy):
    dvc = dvc_commands(repo_copy)
    snake = snakemake_commands(repo_copy)
    assert dvc, "no DVC stages resolved"
    assert dvc == snake, f"only in dvc: {dvc - snake}\nonly in snakemake: {snake - dvc}"


def test_stage_names_match_rule_names(repo_copy):
    from dvc.repo import Repo

    with Repo(str(repo_copy)) as r:
        stages = {s.name.split("@")[0] for s in r.index.stages}
    rules = set(re.findall(r"^rule (\w+):", "\n".join(p.read_text() for p in (repo_copy / "workflow/rules").glob("*.smk")), re.M))
    assert stages == rules - {"all"}
