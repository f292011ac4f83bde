"""workflow/profiles/slurm/config.yaml: parses, names only rules that exist, gives every rule
resources, a GPU to exactly the training/evaluation rules, and enough CPUs for the paper settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stvm.params_file import read_params_file

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
GPU_RULES = {"train_source", "adapt", "adabn", "evaluate", "evaluate_reference"}


def snakefile_rules() -> set[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))])
    return set(re.findall(r"^rule (\w+):", text, re.M)) - {"all"}


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_profile_uses_the_slurm_executor_and_names_only_existing_rules():
    p = profile()
    assert p["executor"] == "slurm"
    named = set(p["set-resources"])
    assert named == snakefile_rules(), f"unknown: {named - snakefile_rules()}; without resources: {snakefile_rules() - named}"


def test_every_rule_has_memory_runtime_and_cpus_and_only_gpu_rules_get_a_gpu():
    for rule, res in profile()["set-resources"].items():
        for key in ("mem_mb", "runtime", "cpus_per_task"):
            assert isinstance(res.get(key), int) and res[key] > 0, f"{rule}.{key}"
        gpu = res.get("gpu", 0) or ("gpu" in str(res.get("gres", "")))
        assert bool(gpu) == (rule in GPU_RULES), f"{rule}: gpu={gpu}"


def test_cpus_cover_the_paper_settings_workers():
    res = profile()["set-resources"]
    for path in sorted((ROOT / "configs/paper").glob("*.yaml")):
        s = read_params_file(path)  # merged over configs/paper/base.yaml
        assert res["prepare"]["cpus_per_task"] >= s["prepare"]["workers"], path.name
        for rule in ("train_source", "adapt"):
            assert res[rule]["cpus_per_task"] >= s["common"]["num_workers"] + 1, (path.name, rule)


def test_the_local_override_merges_into_a_cpu_profile_with_every_rule():
    """workflow/profiles/slurm/local.yaml (the one-node cluster of tools/slurm_local.sh) changes
    resources, never the rule list; merged, no rule asks for a GPU and all name the local partition."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slurm_profile", ROOT / "tools/slurm_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    override = yaml.safe_load((ROOT / "workflow/profiles/slurm/local.yaml").read_text())
    assert set(override) - {"every-rule"} <= set(profile()) | {"slurm-init-seconds-before-status-checks"}
    merged = mod.merged(profile(), override)
    assert set(merged["set-resources"]) == snakefile_rules()
    for rule, res in merged["set-resources"].items():
        assert "gpu" not in res and res["slurm_partition"] == "local", rule
        assert res["runtime"] == profile()["set-resources"][rule]["runtime"], rule  # the rest is the profile's


def test_slurm_profile_tool_refuses_a_missing_override_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "tools/slurm_profile.py"), str(tmp_path / "nope.yaml"),
                           "--out", str(tmp_path / "p")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "nope.yaml" in proc.stderr
