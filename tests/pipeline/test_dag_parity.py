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


def test_adabn_is_made_once_whatever_the_seeds(tmp_path):
    """AdaBN depends on no seed: one adapt and one evaluate command for it, at source_seed, in both DAGs
    (it used to run once per adaptation seed: identical stages)."""
    from tests.pipeline.conftest import copy_repo, tiny_params

    params = tiny_params() | {"seeds": [0, 1, 2], "source_seed": 1}
    repo = copy_repo(tmp_path / "repo", params)
    for cmds in (dvc_commands(repo), snakemake_commands(repo)):
        adabn = sorted(c for c in cmds if "AdaBN" in c)
        assert len(adabn) == 2, adabn
        assert "--variant AdaBN --seed 1 " in adabn[0] and "--out results/models/AdaBN/seed1 " in adabn[0]
        assert "--model results/models/AdaBN/seed1/model.pt" in adabn[1]
        assert sum("--variant STvM " in c for c in cmds) == 3  # the self-trained ones: one per seed
