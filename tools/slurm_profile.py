#!/usr/bin/env python3
"""Write a Snakemake SLURM profile: workflow/profiles/slurm/config.yaml with a site's overrides
merged in (workflow/profiles/slurm/local.yaml: the one-node cluster of tools/slurm_local.sh).

    python tools/slurm_profile.py workflow/profiles/slurm/local.yaml --out build/slurm-local
    snakemake --profile build/slurm-local

Top-level keys of the override replace the profile's; its ``every-rule`` mapping is merged into
``default-resources`` and into every rule's ``set-resources`` (a null value removes the key). The
rules and their other resources come from the profile itself, so nothing is copied."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"


def merged(profile: dict, override: dict) -> dict:
    out = {**profile}
    every = override.get("every-rule") or {}
    if not isinstance(every, dict):
        raise ValueError("every-rule must be a mapping of resource: value")

    def apply(res: dict) -> dict:
        res = {**(res or {}), **every}
        return {k: v for k, v in res.items() if v is not None}

    out["default-resources"] = apply(profile.get("default-resources"))
    out["set-resources"] = {rule: apply(res) for rule, res in (profile.get("set-resources") or {}).items()}
    out.update({k: v for k, v in override.items() if k != "every-rule"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("override", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="profile folder to write (config.yaml in it)")
    ap.add_argument("--profile", type=Path, default=PROFILE)
    args = ap.parse_args(argv)
    try:
        profile = yaml.safe_load(args.profile.read_text())
        override = yaml.safe_load(args.override.read_text()) or {}
        if not isinstance(profile, dict) or not isinstance(override, dict):
            raise ValueError("not a YAML mapping")
        text = yaml.safe_dump(merged(profile, override), sort_keys=False)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.yaml").write_text(
            f"# Written by tools/slurm_profile.py: {args.profile.name} with {args.override} merged in.\n{text}")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"slurm_profile.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
