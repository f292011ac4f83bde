"""DVC experiments side by side: per-run mean mIoU and the params that differ, from `dvc exp show --json`.

Why: `dvc exp show` lists the hash of every changed dependency as a column (every retrained model,
every evaluation folder) and DVC has no switch that hides them, so two experiments' per-variant
means sit among hundreds of characters of md5s. `stvm compare` reads the same JSON that DVC prints
and keeps what a comparison needs: the params that differ between the rows, then one line per run
(Source, AdaBN, ..., STvM) with each experiment's mean ± std (min) over seeds from
``results/summary/<run>.json``, the summary stage's DVC metrics.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stvm.errors import StvmError
from stvm.report.tables import order_runs

SUMMARY_PREFIX = "results/summary/"


@dataclass(frozen=True)
class Experiment:
    """One row of `dvc exp show`: its label, flattened params and per-run summary metrics."""

    label: str
    params: dict[str, Any]
    runs: dict[str, dict[str, float]]  # run -> {miou_mean, miou_std, miou_min, seeds}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _experiment(label: str, data: dict[str, Any]) -> Experiment:
    params: dict[str, Any] = {}
    for source in (data.get("params") or {}).values():
        params.update(_flatten(source.get("data") or {}))
    runs = {}
    for path, metric in (data.get("metrics") or {}).items():
        if path.startswith(SUMMARY_PREFIX) and path.endswith(".json") and metric.get("data"):
            runs[path[len(SUMMARY_PREFIX):-len(".json")]] = metric["data"]
    return Experiment(label, params, runs)


def experiments(show: Any) -> list[Experiment]:
    """The rows of `dvc exp show --json` in DVC's order: workspace, each baseline, its experiments.

    Rows whose run failed or holds no summary metrics are dropped (nothing to compare).
    """
    if not isinstance(show, list):
        raise StvmError(None, "dvc exp show --json: expected a list of baselines")
    rows: list[Experiment] = []
    for base in show:
        rev = str(base.get("rev", "?"))
        label = base.get("name") or (rev if rev == "workspace" else rev[:7])
        rows.append(_experiment(label, base.get("data") or {}))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name") or str(rev.get("rev", "?"))[:7]
                rows.append(_experiment(f"{name} ({str(rev.get('rev', ''))[:7]})", rev.get("data") or {}))
    return [r for r in rows if r.runs]


def changed_params(rows: list[Experiment]) -> list[str]:
    """Param keys whose value is not the same in every row (what the experiments vary)."""
    keys = sorted({k for r in rows for k in r.params})
    return [k for k in keys if len({repr(r.params.get(k)) for r in rows}) > 1]


def _cell(summary: dict[str, float] | None) -> str:
    if not summary or "miou_mean" not in summary:
        return "-"
    text = f"{summary['miou_mean']:.1f}"
    if summary.get("seeds", 1) > 1:
        text += f" ± {summary.get('miou_std', 0.0):.1f} ({summary.get('miou_min', 0.0):.1f})"
    return text


def compare_markdown(rows: list[Experiment]) -> str:
    """Two Markdown tables: the experiments and their differing params; runs × experiments mIoU."""
    if not rows:
        return "No experiment has summary metrics (results/summary/<run>.json): run `dvc exp run` first."
    keys = changed_params(rows)
    lines = ["| experiment | " + " | ".join(keys or ["(no param differs)"]) + " |",
             "|---" * (1 + max(1, len(keys))) + "|"]
    for r in rows:
        lines.append(f"| {r.label} | " + " | ".join(str(r.params.get(k, "-")) for k in keys or [""]) + " |")
    runs = order_runs({run for r in rows for run in r.runs})
    lines += ["", "mIoU, mean ± std (min) over seeds:", "",
              "| run | " + " | ".join(r.label for r in rows) + " |", "|---" * (1 + len(rows)) + "|"]
    for run in runs:
        lines.append(f"| {run} | " + " | ".join(_cell(r.runs.get(run)) for r in rows) + " |")
    return "\n".join(lines) + ("" if keys else "\n\n" + NO_BASELINE)


# Why a hint: `dvc exp run` on an uncommitted demo leaves a baseline row without results, so the only
# rows (workspace, experiment) hold the same params and the table compares nothing.
NO_BASELINE = ("No param differs between these rows. To compare an experiment with the demo, commit "
               "the demo's results as the baseline first: `make baseline` (git add dvc.lock results/summary; "
               "git commit), then `dvc exp run -S section.key=value` and `make compare`.")


def load_exp_show(saved: Path | None = None, all_commits: bool = False) -> Any:
    """`dvc exp show --json` as data: read from ``saved`` (a file of that output) or run DVC here."""
    if saved is not None:
        try:
            return json.loads(saved.read_text())
        except json.JSONDecodeError as err:
            raise StvmError(saved, f"not JSON from `dvc exp show --json` ({err.msg}, line {err.lineno})") from None
    cmd = ["dvc", "exp", "show", "--json", "--no-pager"] + (["--all-commits"] if all_commits else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StvmError(None, "dvc not found on PATH (activate the project's venv, `make venv`)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise StvmError(None, f"`{' '.join(cmd)}` failed (exit {done.returncode}): {last}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise StvmError(None, f"`{' '.join(cmd)}` printed no JSON (is this a DVC repository?)") from None
