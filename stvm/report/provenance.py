"""Provenance of a report: code revision, parameter and data hashes, libraries, wall time, open choices.

So a reader can tell exactly what produced the numbers: the git revision (``unknown`` outside a
git checkout), the sha256 of params.yaml and of every dataset manifest, the library versions of
the report process, the devices and wall time every stage recorded, and every open choice as the
stages wrote it into their metrics files.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from stvm.digest import file_sha256
from stvm.report.tables import TRAINED, Results, Table

FIELDS = ("git revision", "uncommitted changes", "params sha256", "report device", "python", "torch", "torchvision",
          "numpy", "opencv", "protocol", "evaluated architecture", "seeds")


def git_revision(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` of ``cwd``, or ``unknown`` (no git, not a checkout, or any failure)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = proc.stdout.strip()
    return rev if proc.returncode == 0 and rev else "unknown"


def git_changes(cwd: Path | None = None) -> str:
    """Tracked files that differ from the git revision (``none``; ``unknown`` without git).

    The revision alone would hide a params.yaml edited for an experiment; ``dvc.lock`` is left out
    because ``dvc repro`` rewrites it while the pipeline runs, before this stage.
    """
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if proc.returncode != 0:
        return "unknown"
    paths = sorted({line[3:].split(" -> ")[-1] for line in proc.stdout.splitlines() if len(line) > 3})
    paths = [p for p in paths if Path(p).name != "dvc.lock"]
    return ", ".join(paths) if paths else "none"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that computed and drew the report."""
    import cv2
    import numpy
    import torch

    from stvm.compat import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "opencv": cv2.__version__}


def provenance_table(res: Results, info: dict[str, Any], params_path: Path, device: str) -> Table:
    """Key facts of the run as a two-column table (one row per ``FIELDS`` entry)."""
    repo = params_path.resolve().parent
    values = {"git revision": git_revision(repo), "uncommitted changes": git_changes(repo),
              "params sha256": file_sha256(params_path),
              "report device": device, **library_versions(), "protocol": info["protocol"],
              "evaluated architecture": info["arch"], "seeds": ", ".join(map(str, res.seeds))}
    return Table("provenance", "Provenance", ["field", "value"], [[k, str(values[k])] for k in FIELDS],
                 note=f"params file: {params_path}. Library versions are those of the report process.")


def datasets_table(res: Results) -> Table:
    """Each prepared dataset's manifest: format, size, counts and hashes; plus the synthetic generator."""
    rows = []
    for role, m in sorted(res.manifests.items()):
        counts = ", ".join(f"{s} {v.get('count')}" for s, v in m.get("splits", {}).items())
        size = "x".join(map(str, m.get("size", []))) or None
        rows.append([role, m.get("dataset"), m.get("root"), size, counts, m.get("sources_sha256"),
                     file_sha256(res.files[f"manifest/{role}"])])
    if res.synth is not None:
        counts = ", ".join(f"{k} {v}" for k, v in res.synth.get("counts", {}).items())
        rows.append(["synth generator", f"{res.synth.get('generator')} v{res.synth.get('version')} "
                     f"seed {res.synth.get('seed')} shift {res.synth.get('shift')}", str(res.files["synth"].parent),
                     f"{res.synth.get('width')}x{res.synth.get('height')}", counts, None,
                     file_sha256(res.files["synth"])])
    cols = ["role", "dataset", "root", "size", "frames", "sources sha256", "manifest sha256"]
    return Table("datasets", "Datasets", cols, rows,
                 note="From data/prepared/<role>/manifest.json (sources sha256 = hash over every raw file read).")


def wall_table(res: Results) -> Table:
    """Wall time, device and threads of every stage run, as recorded in its info and metrics files."""
    rows: list[list[Any]] = []
    for run in res.runs:
        for seed in sorted(res.evals[run]):
            t = res.train[run][seed]
            rows.append(["train_source" if run in TRAINED else "adapt", run, seed, t.get("wall_seconds"),
                         t.get("device"), t.get("threads"), t.get("iterations")])
            ev = res.evals[run][seed].get("evaluation", {})
            rows.append(["evaluate", run, seed, ev.get("wall_seconds"), ev.get("device"), ev.get("threads"), None])
    return Table("wall_time", "Wall time per stage",
                 ["stage", "run", "seed", "wall seconds", "device", "threads", "iterations"], rows,
                 note="train_metrics.json/adapt_metrics.json (wall seconds, iterations), train_info.json/"
                      "adapt_info.json (device, threads) and eval_info.json 'evaluation'.",
                 decimals=2)


def choices_table(res: Results) -> Table:
    """Every open choice as recorded by adapt and evaluate; identical values are merged across runs."""
    seen: dict[tuple[str, str], list[str]] = {}
    for run in res.runs:
        for seed in sorted(res.evals[run]):
            ev = res.evals[run][seed].get("evaluation", {})
            for k in ("scales", "flip", "mst", "input_size", "scoring_resolution", "batch_size"):
                if k in ev:
                    value = ev[k] if isinstance(ev[k], str) else json.dumps(ev[k])
                    seen.setdefault((f"evaluate.{k}", value), []).append(f"{run}/seed{seed}")
            for k, v in res.train[run][seed].get("choices", {}).items():
                seen.setdefault((f"adapt.{k}", str(v)), []).append(f"{run}/seed{seed}")
    rows = [[key, value, _where(res, where)] for (key, value), where in sorted(seen.items())]
    return Table("open_choices", "Open choices", ["choice", "value", "runs"], rows,
                 note="adapt_info.json 'choices' and eval_info.json 'evaluation' (MST scales and flip, scoring "
                      "resolution); the iteration budget and evaluated network are in the adapt choices.")


def _where(res: Results, where: list[str]) -> str:
    """``all runs`` / ``all adapted runs`` when a value is shared by every one, else the list."""
    everything = [f"{r}/seed{s}" for r in res.runs for s in sorted(res.evals[r])]
    adapted = [w for w in everything if not w.startswith("Source/")]
    if where == everything:
        return "all runs"
    return "all adapted runs" if where == adapted else ", ".join(where)
