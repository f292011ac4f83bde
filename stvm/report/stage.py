"""The ``report`` stage: every metrics file of a pipeline run -> results/report (md, html, CSV, PNG).

Reads everything first (a missing or corrupt file is a ``StvmError`` naming it), builds tables,
training curves and the qualitative panel, and only then writes the whole output folder in one
atomic rename, so a failed report never leaves a half-written one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvm.config import ReportParams
from stvm.io import atomic_dir, prepare_out_dir, refuse_foreign
from stvm.report import confusion, curves, deltas, figures, paper, provenance, render
from stvm.report.tables import PAPER, TRAINED, Results, collect_results, run_info, tables_for

TITLE = "STvM: source-free adaptation report"
OWN = ("report.md", "report.html", "tables/*.csv", "figures/*.png")  # what write_report writes
# Columns of plots/adapt.csv drawn as curves, with axis labels (train.csv has loss and lr).
ADAPT_CURVES = {
    "loss": "student loss (Eq. 5, reliability-weighted CE)",
    "loss_metric": "metric loss (NCA, Eq. 2)",
    "lr": "learning rate of F",
    "reliability": "mean reliability w (Eq. 4)",
    "metric_fraction": "fraction of pixels in metric pseudo-labels",
    "metric_samples": "pixels M trained on per iteration (class-balanced)",
    "buffer_fill": "MOCM buffer fill (fraction of slots)",
    "mocm_coverage": "fraction of student pixels covered by MOCM patches",
    "teacher_drift": "teacher's distance from the source weights (relative L2)",
}


def panel_run(res: Results) -> str | None:
    """The adapted run whose error, reliability and confidence maps the panel shows: STvM when it ran,
    else the last variant, else none (then Source's are shown)."""
    adapted = [r for r in res.runs if r not in TRAINED]
    return "STvM" if "STvM" in adapted else (adapted[-1] if adapted else None)


def run_colour(run: str) -> tuple[int, int, int]:
    """The same colour for a run in every chart (Table IV order)."""
    from stvm.report.tables import ORDER

    return figures.COLOURS[(ORDER.index(run) if run in ORDER else len(ORDER)) % len(figures.COLOURS)]


def curve_figures(res: Results) -> list[render.Figure]:
    """Training curves: the source model per seed (train.csv), every variant's mean over seeds with the
    seeds' min-max band (adapt.csv)."""
    out = []
    src = res.curves.get("Source", {})
    for col, label in (("loss", "source training loss (CE)"), ("lr", "learning rate of F")):
        series = [figures.Series(f"Source seed {s}", src[s]["iteration"], src[s][col], figures.COLOURS[i % 8])
                  for i, s in enumerate(sorted(src)) if col in src[s]]
        img = figures.line_chart(series, f"Source training: {label}", "iteration", col)
        out.append(render.Figure(f"train_{col}", f"Source training {col}", figures.png_bytes(img),
                                 f"results/models/Source/seed<k>/plots/train.csv, column '{col}', one line per seed."))
    for col, label in ADAPT_CURVES.items():
        series, flat = adapt_series(res, col)
        if not series:
            continue
        img = figures.line_chart(series, f"Adaptation: {label} (mean over seeds)", "iteration", col)
        how = "value at the end of each logging interval" if col in ("lr", "buffer_fill", "teacher_drift") else \
            "mean over each logging interval"
        left_out = f" Constant, so not drawn (the variant lacks it): {', '.join(flat)}." if flat else ""
        out.append(render.Figure(f"adapt_{col}", f"Adaptation {col}", figures.png_bytes(img),
                                 f"results/models/<variant>/seed<k>/plots/adapt.csv, column '{col}' ({how}): "
                                 f"mean over the seeds that logged it, shaded from the lowest to the highest "
                                 f"seed.{left_out}"))
    return out


def adapt_series(res: Results, col: str) -> tuple[list[figures.Series], list[str]]:
    """Each adapted run's curve of adapt.csv column ``col`` (mean over seeds, band min to max over
    seeds, on the iterations every seed logged), and the runs left out because it is constant for them
    (a quantity the variant does not have: 0, or w = 1 throughout)."""
    series, flat = [], []
    for run in [r for r in res.runs if r not in TRAINED and res.curves.get(r)]:
        per_seed = {s: list(zip(c["iteration"], c[col], strict=True)) for s, c in res.curves[run].items() if c.get(col)}
        its, mean, lo, hi = curves.seed_band(per_seed) if per_seed else ([], [], [], [])
        if not its:
            continue
        if len(set(lo)) <= 1 and len(set(hi)) <= 1:
            flat.append(run)
            continue
        n = len(per_seed)
        label = f"{run} (mean, band min-max of {n} seeds)" if n > 1 else f"{run} (1 seed)"
        series.append(figures.Series(label, its, mean, run_colour(run), band=(lo, hi) if n > 1 else None))
    return series, flat


def panel_runs(res: Results) -> tuple[dict[str, Path], dict[str, int]]:
    """Every evaluated run's evaluation folder for the panel (Source first; none without Source) and its
    seed: the lowest seed all runs share, else each run's lowest."""
    if "Source" not in res.evals:
        return {}, {}
    names = ["Source"] + [r for r in res.runs if r != "Source"]
    common = set.intersection(*(set(res.evals[r]) for r in names))
    seeds = {r: min(common) if common else min(res.evals[r]) for r in names}
    return {r: res.files[f"eval/{r}/seed{seeds[r]}"].parent for r in names}, seeds


def panel_figure(cfg: ReportParams, res: Results, prepared_root: Path) -> render.Figure | None:
    """The qualitative panel from the maps the evaluations wrote (one seed per run; ``evaluate.maps`` images)."""
    from stvm.report.panels import qualitative_panel

    runs, seeds = panel_runs(res)
    if not runs:
        return None
    detail = panel_run(res) or "Source"
    val = prepared_root / "target" / "val"
    panel = qualitative_panel(val / "images", val / "labels", runs, detail,
                              int(res.evals["Source"][seeds["Source"]].get("protocol", 19)), cfg.tile_width)
    if panel is None:
        return None
    img, stems, size = panel
    which = (f"seed {seeds['Source']} of every run" if len(set(seeds.values())) == 1
             else "seeds " + ", ".join(f"{r} {s}" for r, s in seeds.items()))
    caption = (f"One prediction column per run ({which}); images {', '.join(stems)} of data/prepared/target/val at "
               f"the evaluation input size {size[0]}x{size[1]}; labels in the Cityscapes palette, black = ignore. "
               f"Errors, reliability and confidence are {detail}'s: the error map marks its wrong pixels against the "
               f"ground truth (ignore label black, not counted), coloured by whether Source was right there; "
               f"maps in viridis, 0 to 1.")
    return render.Figure("qualitative", "Qualitative results", figures.png_bytes(img), caption)


def intro(res: Results, info: dict[str, Any]) -> str:
    """What was run, and where the numbers come from."""
    target, source = res.manifests.get("target", {}), res.manifests.get("source", {})
    return (f"Runs: {', '.join(res.runs)}; seeds: {', '.join(map(str, res.seeds))}; protocol {info['protocol']} "
            f"classes; network `{info['arch']}`; source data `{source.get('root', '?')}` "
            f"({source.get('dataset', '?')} format), target data `{target.get('root', '?')}` "
            f"({target.get('dataset', '?')} format).\n\n"
            f"Every number labelled \"this run\" is read from a file this pipeline wrote (the table notes "
            f"name it); rows and columns labelled \"{PAPER}\" are the paper's, from its tables shipped as "
            f"stvm/report/paper/*.csv: {paper.CITATION} The paper's numbers are on real data with "
            f"DeepLabV2-R101 or DeepLabV3-R50; a run on the synthetic benchmark is not expected to reach them.")


def build_sections(cfg: ReportParams, res: Results, prepared_root: Path, params_path: Path,
                   device: str) -> list[render.Section]:
    """All sections of the report, in reading order."""
    info = run_info(res)
    t = tables_for(res)
    delta = deltas.delta_table(res)
    panel = panel_figure(cfg, res, prepared_root)
    learning = curves.curve_figure(curves.collect_curves(res.files), curves.levels_of(res.evals), run_colour)
    return [
        render.Section("Summary", intro(res, info)),
        render.Section("Ablation", tables=[t["ablation"]]),
        render.Section("Per-class IoU", tables=[x for x in (t["per_class"], delta, t.get("cross_city")) if x],
                       figures=deltas.delta_figures(res, run_colour)),
        render.Section("Confusion matrices", figures=confusion.confusion_figures(res, info["protocol"])),
        render.Section("Variance and metric space", tables=[t["variance"], t["silhouette"], t["per_seed"]]),
        render.Section("Training curves", figures=curve_figures(res)),
        *([render.Section("Learning curve", curves.ORACLE_SELECTION, figures=[learning])] if learning else []),
        render.Section("Qualitative results", "" if panel else "No panel (evaluate.maps is 0 or no Source run).",
                       figures=[panel] if panel else []),
        render.Section("Provenance", tables=[
            provenance.provenance_table(res, info, params_path, device), provenance.datasets_table(res),
            provenance.wall_table(res), provenance.choices_table(res)]),
    ]


def write_report(out: Path, sections: list[render.Section]) -> None:
    """Write report.md, report.html, tables/*.csv and figures/*.png into ``out`` in one atomic rename."""
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for sec in sections:
            for table in sec.tables:
                (tmp / "tables" / f"{table.name}.csv").write_text(render.table_csv(table))
            for fig in sec.figures:
                (tmp / "figures" / f"{fig.name}.png").write_bytes(fig.png)
        (tmp / "report.md").write_text(render.render_markdown(TITLE, sections))
        (tmp / "report.html").write_text(render.render_html(TITLE, sections))


def report_stage(cfg: ReportParams, *, eval_root: Path, models_root: Path, prepared_root: Path, synth: Path | None,
                 params_path: Path, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Build the report of a pipeline run into ``out`` (replaced as a whole); return a short summary."""
    from stvm.runtime import resolve_device

    prepare_out_dir(out, [eval_root, models_root, prepared_root, synth])
    refuse_foreign(out, OWN, "report replaces its output folder as a whole, so give it a folder of its own")
    res = collect_results(eval_root, models_root, prepared_root, synth)
    sections = build_sections(cfg, res, prepared_root, params_path, str(resolve_device(device)))
    write_report(out, sections)
    return {"out": str(out), "runs": res.runs, "seeds": res.seeds,
            "tables": [t.name for s in sections for t in s.tables],
            "figures": [f.name for s in sections for f in s.figures]}
