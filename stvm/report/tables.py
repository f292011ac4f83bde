"""Metrics files -> paper-style tables (Tables I-IV, VI, VII) and the data behind them.

Every number comes from a file the pipeline wrote (``results/eval/<run>/seed<k>/metrics.json``,
``results/models/<run>/seed<k>/{train,adapt}_metrics.json`` and ``plots/*.csv``) or from the
paper's tables shipped as CSV (``stvm.report.paper``). A missing or corrupt file is a
``StvmError`` naming it. ``collect``/``ablation_rows``/``ablation_markdown`` serve ``stvm summary``.

Why one file over 300 lines: the reading of every results file and the tables built from them share
the ``Results`` structure; each table is a function of a screen or less.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvm.errors import StvmError
from stvm.io import atomic_dir, read_json, refuse_foreign, write_json
from stvm.report import paper
from stvm.variants import RUN_ORDER, TRAINED

ORDER = RUN_ORDER  # row order of every table (stvm.variants, the one table of runs)
PAPER, OURS = "paper (real data)", "this run"

Cell = str | float | int | None


@dataclass(frozen=True)
class Table:
    """A table as data: raw cells (floats keep full precision; renderers format them)."""

    name: str  # file stem of the CSV
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""
    decimals: int = 1
    signed: bool = False  # every number shown with its sign (a table of differences)


@dataclass
class Results:
    """Everything the pipeline wrote that the report reads, keyed by run name and seed."""

    evals: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    confusions: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    train: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # run -> seed -> {train,adapt}_metrics
    curves: dict[str, dict[int, dict[str, list[float]]]] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # what was read, for provenance hashes
    synth: dict[str, Any] | None = None

    @property
    def runs(self) -> list[str]:
        return order_runs(self.evals)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for per in self.evals.values() for s in per})


def order_runs(names: Any) -> list[str]:
    """Run names in Table IV order, unknown names last (alphabetically)."""
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def _seed_of(folder: Path) -> int:
    try:
        return int(folder.name.removeprefix("seed"))
    except ValueError:
        raise StvmError(folder, "expected a folder named seed<k>") from None


def collect(eval_root: Path, key: str = "miou") -> dict[str, dict[int, float]]:
    """``{run name: {seed: metric}}`` for every metrics file under ``eval_root`` (``scores.json`` beside it
    for keys that are not headline numbers, e.g. ``miou16_19conv``)."""
    if not eval_root.is_dir():
        raise StvmError(eval_root, "no evaluation results (run the pipeline first)")
    out: dict[str, dict[int, float]] = {}
    for path in sorted(eval_root.glob("*/seed*/metrics.json")):
        name, seed = path.parent.parent.name, _seed_of(path.parent)
        metrics = read_json(path)
        if not isinstance(metrics, dict):
            raise StvmError(path, f"expected a JSON object of metrics, got a {type(metrics).__name__}")
        value = metrics.get(key)
        if value is None and path.with_name("scores.json").is_file():  # a key beyond the headline ones
            value = _read_dict(path.with_name("scores.json")).get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StvmError(path, f"'{key}' is {str(value)[:40]!r}, not a finite number")
        out.setdefault(name, {})[seed] = float(value)
    if not out:
        raise StvmError(eval_root, f"no metrics.json with '{key}' found")
    return out


def stats(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample std (0 for one value), min) of ``values``."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, min(values)


def ablation_rows(runs: dict[str, dict[int, float]]) -> list[dict[str, float | str | int]]:
    """Rows in Table IV order: mean, std (sample, 0 for one seed), min, seeds and delta to the row above."""
    rows, prev = [], None
    for name in order_runs(runs):
        mean, std, low = stats([runs[name][s] for s in sorted(runs[name])])
        rows.append({"name": name, "mean": mean, "std": std, "min": low, "seeds": len(runs[name]),
                     "delta": None if prev is None else mean - prev})
        prev = mean
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    """The ablation rows as a Markdown table (one seed has no spread: "± n/a", never "± 0.0")."""
    lines = ["| run | mIoU mean ± std | min | seeds | Δ to row above |", "|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r["delta"] is None else f"{r['delta']:+.1f}"
        spread = f"{r['std']:.1f}" if r["seeds"] > 1 else "n/a (1 seed)"
        lines.append(f"| {r['name']} | {r['mean']:.1f} ± {spread} | {r['min']:.1f} | {r['seeds']} | {delta} |")
    return "\n".join(lines)


def write_summary(rows: list[dict], out: Path, key: str = "miou") -> None:
    """One ``out/<run>.json`` per run, ``{key}_mean/_std/_min`` and ``seeds``: numbers only, one row per
    variant in ``dvc metrics show`` (the folder is a DVC metrics entry), replaced as a whole."""
    refuse_foreign(out, ("*.json",), "summary replaces its --out folder as a whole, so give it a folder of its own")
    with atomic_dir(out, overwrite=True) as tmp:
        for r in rows:
            write_json(tmp / f"{r['name']}.json", {f"{key}_mean": round(r["mean"], 4), f"{key}_std": round(r["std"], 4),
                                                   f"{key}_min": round(r["min"], 4), "seeds": r["seeds"]})


# --- reading everything the pipeline wrote ------------------------------------------------------


def read_curve(path: Path) -> dict[str, list[float]]:
    """A plots CSV (``iteration`` + numeric columns) as ``{column: values}``."""
    if not path.is_file():
        raise StvmError(path, "file not found")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
            columns = list(rows[0]) if rows else []
        if "iteration" not in columns:
            raise StvmError(path, "not a plots CSV: no 'iteration' column" if rows else "no rows")
        return {c: [float(r[c]) for r in rows] for c in columns}
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as err:
        raise StvmError(path, f"corrupt plots CSV ({err})") from None


def _read_dict(path: Path) -> dict[str, Any]:
    """A JSON object file a stage writes next to its numbers (per-class IoU, provenance)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise StvmError(path, "expected a JSON object")
    return data


def _read_eval(res: Results, metrics_path: Path) -> None:
    """One evaluation folder: metrics.json and its confusion.json (both required)."""
    run, seed = metrics_path.parent.parent.name, _seed_of(metrics_path.parent)
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("miou"), (int, float)):
        raise StvmError(metrics_path, "not an stvm metrics file (no numeric 'miou')")
    metrics = {**metrics, **_read_dict(metrics_path.with_name("scores.json")),
               **_read_dict(metrics_path.with_name("eval_info.json"))}
    confusion = read_json(metrics_path.with_name("confusion.json"))
    if not isinstance(confusion, dict) or confusion.get("protocol") != metrics.get("protocol"):
        raise StvmError(metrics_path.with_name("confusion.json"), "protocol differs from metrics.json's")
    res.evals.setdefault(run, {})[seed] = metrics
    res.confusions.setdefault(run, {})[seed] = confusion
    res.files[f"eval/{run}/seed{seed}"] = metrics_path


def _read_model_run(res: Results, models_root: Path, run: str, seed: int) -> None:
    """The training side of one evaluated run: {train,adapt}_metrics.json and its plots CSV."""
    folder = models_root / run / f"seed{seed}"
    kind = "train" if run in TRAINED else "adapt"
    path = folder / f"{kind}_metrics.json"
    metrics = read_json(path)
    if not isinstance(metrics, dict) or "wall_seconds" not in metrics:
        raise StvmError(path, "not an stvm training metrics file (no 'wall_seconds')")
    metrics = {**metrics, **_read_dict(folder / f"{kind}_info.json")}
    res.train.setdefault(run, {})[seed] = metrics
    if metrics.get("iterations") != 0:  # AdaBN takes no steps: no curve
        res.curves.setdefault(run, {})[seed] = read_curve(folder / "plots" / f"{kind}.csv")
    res.files[f"{kind}/{run}/seed{seed}"] = path


def _reads_from(manifests: dict[str, dict], folder: Path) -> bool:
    """Whether a prepared dataset came from ``folder`` (paths as the stages wrote them, from the cwd).

    The synthetic generator belongs in the report only when the data came from it: a paper setting
    on real datasets still has the pipeline's synth output, but did not use it.
    """
    base = folder.resolve()
    return any(Path(m.get("root", "")).resolve().is_relative_to(base) for m in manifests.values() if m.get("root"))


def collect_results(eval_root: Path, models_root: Path, prepared_root: Path, synth: Path | None = None) -> Results:
    """Read every metrics, plots and manifest file of a pipeline run (StvmError on the first bad one)."""
    res = Results()
    if not eval_root.is_dir():
        raise StvmError(eval_root, "no evaluation results (run the pipeline first)")
    for path in sorted(eval_root.glob("*/seed*/metrics.json")):
        _read_eval(res, path)
    if not res.evals:
        raise StvmError(eval_root, "no <run>/seed<k>/metrics.json found")
    for run in res.evals:
        for seed in res.evals[run]:
            _read_model_run(res, models_root, run, seed)
    for path in sorted(prepared_root.glob("*/manifest.json")):
        res.manifests[path.parent.name] = read_json(path)
        res.files[f"manifest/{path.parent.name}"] = path
    if "target" not in res.manifests:
        raise StvmError(prepared_root / "target" / "manifest.json", "file not found")
    if synth is not None and _reads_from(res.manifests, synth.parent):
        res.synth = read_json(synth)
        res.files["synth"] = synth
    return res


# --- the paper-style tables ----------------------------------------------------------------------


def seed_values(res: Results, run: str, key: str) -> list[float]:
    """``key`` of every seed of ``run`` that has it (absent = NaN IoU, left out)."""
    per = res.evals[run]
    return [float(per[s][key]) for s in sorted(per) if isinstance(per[s].get(key), (int, float))]


def _paper_rows(table: int, name_col: str = "Name") -> dict[str, list[str]]:
    header, rows = paper.read_table(table)
    i = header.index(name_col)
    return {paper.short_name(r[i]): r for r in rows}


def ablation_table(res: Results, key: str = "miou") -> Table:
    """Table IV: our runs (mean, std, min over seeds, Δ) beside the paper's ablation column."""
    header, _ = paper.read_table(4)
    ref = _paper_rows(4)
    rows, prev, prev_paper = [], None, None
    for run in res.runs:
        vals = seed_values(res, run, key)
        mean, std, low = stats(vals)
        p = ref.get(paper.short_name(run), [""] * len(header))
        p_miou = paper.number(p[header.index("mIoU")])
        p_delta = None if p_miou is None or prev_paper is None else p_miou - prev_paper
        rows.append([run, p_miou, p_delta, mean, std, low, len(vals), None if prev is None else mean - prev])
        prev, prev_paper = mean, (p_miou if p_miou is not None else prev_paper)
    cols = ["run", f"{PAPER}: mIoU", f"{PAPER}: Δ to row above", f"{OURS}: mIoU mean", f"{OURS}: std",
            f"{OURS}: min", f"{OURS}: seeds", f"{OURS}: Δ to row above"]
    return Table("table4_ablation", "Ablation (Table IV)", cols, rows,
                 note=f"Paper: GTA5 → Cityscapes, DeepLabV2-R101, real data. Δ columns: this run's to the "
                      f"row above, the paper's to the nearest row above with a paper value (the paper's own Δ is to its "
                      f"previous variant, which may not have run here). This run: `{key}` of "
                      f"results/eval/<run>/seed<k>/metrics.json, "
                      f"mean/std (sample)/min over seeds.")


def run_info(res: Results) -> dict[str, Any]:
    """Protocol and architecture of the evaluated models (from eval_info.json 'protocol' and 'model')."""
    first = res.evals[res.runs[0]][min(res.evals[res.runs[0]])]
    protocols = {int(m["protocol"]) for per in res.evals.values() for m in per.values()}
    if len(protocols) != 1:
        raise StvmError(None, f"evaluation results mix protocols {sorted(protocols)}; report one protocol at a time")
    arch = str(first.get("model", {}).get("arch", "unknown"))
    network = "DeepLabV3" if arch.startswith("deeplabv3") else "DeepLabV2"
    return {"protocol": protocols.pop(), "arch": arch, "network": network}


def class_columns(protocol: int) -> tuple[list[str], list[str]]:
    """(paper column names, our metric keys) of ``protocol``'s classes, in protocol order."""
    from stvm.data.labels import PROTOCOL_CLASSES, protocol_class_names
    from stvm.evaluate.metrics import metric_key

    header, _ = paper.read_table(1)
    names19 = header[3:22]
    return [names19[t] for t in PROTOCOL_CLASSES[protocol]], [metric_key(n) for n in protocol_class_names(protocol)]


def mean_or_none(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def per_class_table(res: Results) -> Table:
    """Table I/II/III-style per-class IoU of our runs (mean over seeds), with the paper's rows."""
    info = run_info(res)
    protocol = info["protocol"]
    names, keys = class_columns(protocol)
    summary = [("mIoU", "miou")] + ([("mIoU*", "miou13")] if protocol == 16 else [])
    rows: list[list[Cell]] = [[OURS, run, info["arch"]] + [mean_or_none(seed_values(res, run, k)) for k in keys]
                              + [mean_or_none(seed_values(res, run, k)) for _, k in summary] for run in res.runs]
    table_no = {19: 1, 16: 2, 13: 3}[protocol]
    if protocol in (19, 16):
        header, prow = paper.read_table(table_no)
        for r in prow:
            if r[header.index("Network")] == info["network"] and r[header.index("SF")] == "✓":
                rows.append([PAPER, r[0], r[1]] + [paper.number(c) for c in r[3: 3 + len(keys) + len(summary)]])
    cols = ["source", "method", "network"] + names + [n for n, _ in summary]
    setting = {19: "GTA5 → Cityscapes (Table I)", 16: "SYNTHIA → Cityscapes (Table II)",
               13: "Cityscapes → NTHU Cross-City (Table III has no per-class IoU; see the next table)"}[protocol]
    note = (f"Protocol {protocol}: per-class IoU of scores.json `iou/<class>`, mean over seeds (– = class absent "
            f"from ground truth and prediction). Paper rows: source-free methods with {info['network']}-R101 on "
            f"real data, {setting}.")
    return Table(f"table{table_no}_per_class", f"Per-class IoU, {protocol} classes", cols, rows, note)


def cross_city_table(res: Results) -> Table | None:
    """Table III (protocol 13 only): our mIoU beside the paper's for the target city (or all cities)."""
    info = run_info(res)
    if info["protocol"] != 13:
        return None
    header, prow = paper.read_table(3)
    city = res.manifests["target"].get("city")
    cities = [city] if city in header else header[2:]
    rows: list[list[Cell]] = [[OURS, run, info["arch"]] + [stats(seed_values(res, run, "miou"))[0] if city in header
                              else None for _ in cities] for run in res.runs]
    short = "DL V3" if info["network"] == "DeepLabV3" else "DL V2"
    rows += [[PAPER, r[0], r[1]] + [paper.number(r[header.index(c)]) for c in cities] for r in prow if r[1] == short]
    note = f"Target city: {city or 'not a Cross-City run (this run is shown in no city column)'}."
    return Table("table3_cross_city", "Cross-City mIoU (Table III)", ["source", "method", "network"] + cities,
                 rows, note)


def variance_table(res: Results, key: str = "miou") -> Table:
    """Table VI: mean ± std and min over seeds of every run, beside the paper's five-seed figures."""
    rows: list[list[Cell]] = []
    for run in res.runs:
        vals = seed_values(res, run, key)
        rows.append([OURS, run, *stats(vals), len(vals)])
    header, prow = paper.read_table(6)
    for r in prow:
        pm = paper.plus_minus(r[1])
        rows.append([PAPER, r[0], pm[0] if pm else None, pm[1] if pm else None, paper.number(r[2]), None])
    cols = ["source", "method", "mean", "std", "min", "seeds"]
    return Table("table6_variance", "Variance over seeds (Table VI)", cols, rows,
                 note=f"{seed_design(res)} Paper: GTA5 → Cityscapes, DeepLabV2-R101, five adaptation seeds "
                      f"(after URMA). Std is the sample std.", decimals=2)


def seed_design(res: Results) -> str:
    """Which seed design the adapted runs follow, from the source seed each adapt_metrics.json records."""
    pairs = {(s, m.get("source_seed")) for run, per in res.train.items() if run not in TRAINED
             for s, m in per.items()}
    if not pairs:
        return ""
    sources = sorted({src for _, src in pairs if src is not None})
    if len(sources) == 1:
        return (f"Adaptation seeds {', '.join(str(s) for s in sorted({s for s, _ in pairs}))} all start from one "
                f"source model (seed {sources[0]}), as the paper's Table VI; the Source row is that one model.")
    if all(s == src for s, src in pairs):
        return "Each adaptation seed starts from its own source model (per-seed-source design)."
    return "Adaptation runs start from source models " + ", ".join(f"{src} (seed {s})" for s, src in sorted(pairs)) + "."


def silhouette_table(res: Results) -> Table:
    """Table VII: silhouette (x100) of the metric network's features, for runs that carry one."""
    keys = ("silhouette/class_mean", "silhouette/overall_mean")
    rows: list[list[Cell]] = []
    for run in res.runs:
        per = [seed_values(res, run, k) for k in keys]
        if per[0] and per[1]:
            (cm, cs, _), (om, os_, _) = stats(per[0]), stats(per[1])
            rows.append([OURS, run, cm, cs, om, os_, len(per[0])])
    header, prow = paper.read_table(7)
    rows += [[PAPER, r[0], paper.number(r[1]), None, paper.number(r[2]), None, None] for r in prow]
    cols = ["source", "method", "class mean", "class mean std", "overall mean", "overall mean std", "seeds"]
    note = ("metrics.json `silhouette/class_mean` and `silhouette/overall_mean` (x100), mean and std over seeds; "
            "only runs whose checkpoint carries the metric network M have them.")
    return Table("table7_silhouette", "Silhouette of the metric space (Table VII)", cols, rows, note)


def per_seed_table(res: Results) -> Table:
    """Every evaluated (run, seed) with its headline numbers, unaveraged."""
    protocol = run_info(res)["protocol"]
    keys = ["miou"] + (["miou13"] if protocol == 16 else []) + ["pixel_acc", "silhouette/class_mean",
                                                                "silhouette/overall_mean"]
    rows = [[run, seed] + [res.evals[run][seed].get(k) for k in keys]
            for run in res.runs for seed in sorted(res.evals[run])]
    return Table("per_seed", "Every run and seed", ["run", "seed"] + keys, rows,
                 note="Straight from results/eval/<run>/seed<k>/metrics.json.")


def tables_for(res: Results) -> dict[str, Table | None]:
    """Every results table of the report, by role."""
    return {"ablation": ablation_table(res), "per_class": per_class_table(res), "cross_city": cross_city_table(res),
            "variance": variance_table(res), "silhouette": silhouette_table(res), "per_seed": per_seed_table(res)}
