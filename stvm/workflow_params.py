"""The params file a Snakemake run's commands read: ``params.yaml``, or a copy of Snakemake's merged
``config`` when ``--config`` changed a value.

Why: every command reads its parameters from a file (``--params``), while Snakemake merges
``--config`` overrides into ``config`` in memory only. Without this, an override caused a rerun
("Params have changed") and was then ignored by the command, and the recorded run named a value the
weights were not trained with. ``common.smk`` calls ``params_file(config)`` once at parse time and
every rule passes the result as ``--params``; with no override it is ``params.yaml`` itself, so the
commands stay those of ``dvc.yaml`` (the DAG parity test).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from stvm.config import load_params, params_from_dict
from stvm.errors import StvmError
from stvm.io import atomic_path

DEFAULT = Path("params.yaml")
OVERRIDES = Path(".snakemake/stvm")
WORKFLOW_ONLY = ("container",)  # read by the Snakefile itself (--config container=...), not a stage parameter


def params_file(config: dict[str, Any], default: Path = DEFAULT) -> str:
    """``default`` when ``config`` holds its values, else a validated copy of ``config`` (content-addressed,
    so equal overrides share a file and a changed one gets a new name)."""
    on_disk = yaml.safe_load(default.read_text()) if default.is_file() else {}
    config = typed({k: v for k, v in config.items() if k not in WORKFLOW_ONLY}, on_disk)
    if config == on_disk:
        load_params(default)  # the file itself is validated by the commands too; fail at parse time here
        return str(default)
    try:
        params_from_dict(config)
    except StvmError as err:
        raise StvmError(f"snakemake --config (over {default})", err.problem) from None
    text = yaml.safe_dump(config, sort_keys=False)
    path = OVERRIDES / f"params-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(f"# snakemake --config over {default}; written by stvm.workflow_params\n" + text)
    return str(path)


def typed(value: Any, original: Any) -> Any:
    """``value`` with the strings Snakemake's --config parser leaves in nested mappings (``{lr: 0.01}``
    gives ``'0.01'``) read as YAML scalars, where they differ from the file's value."""
    if isinstance(value, dict):
        base = original if isinstance(original, dict) else {}
        return {k: typed(v, base.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        base = original if isinstance(original, list) and len(original) == len(value) else [None] * len(value)
        return [typed(v, o) for v, o in zip(value, base, strict=True)]
    if isinstance(value, str) and value != original and not isinstance(original, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value
