"""The report stage (``stvm.report.stage``) end to end on a tiny pipeline tree: every table, figure and
provenance field, numbers equal to the metrics files, bad inputs named; and its curve series."""

import base64
import csv
import hashlib
import itertools
import json
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from stvm.adapt.loop import adapt
from stvm.cli import main
from stvm.config import EvaluateParams, params_from_dict
from stvm.errors import StvmError
from stvm.evaluate.stage import evaluate_stage
from stvm.report import paper
from stvm.report.provenance import FIELDS
from stvm.report.tables import collect_results
from stvm.train import train_source
from tests.fixtures.tiny import adapt_params, train_params, write_prepared

PAPER_DIR = Path(__file__).resolve().parents[2] / "stvm" / "report" / "paper"


# --- the report stage on a tiny but real pipeline run ---------------------------------------------


@pytest.fixture(scope="module")
def run_tree(tmp_path_factory):
    """A results tree written by the real stages (Source, AdaBN, ST_MT, STvM; seed 0), plus a seed 1 copy
    whose headline numbers are changed, so means and stds over seeds are non-trivial."""
    root = tmp_path_factory.mktemp("report")
    src = write_prepared(root / "data/prepared/source/train")
    val = write_prepared(root / "data/prepared/target/val")
    models, evals = root / "results/models", root / "results/eval"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_source(train_params(iterations=6), images=src[0], labels=src[1], out=models / "Source/seed0",
                     protocol=19, seed=0, device="cpu", show_progress=False)
        for variant in ("AdaBN", "ST_MT", "STvM"):  # STvM with a snapshot: the learning curve
            # tau_mocm far above any distance: the MOCM buffers fill whatever this CPU's rounding, and
            # (50 slots) keep filling over the 4 iterations, so buffer_fill is a curve, not a constant
            cfg = adapt_params(iterations=4, tau_mocm=1e9, buffer_size=50, snapshots=[2] if variant == "STvM" else [])
            adapt(cfg, variant=variant, source_model=models / "Source/seed0/model.pt",
                  target_images=val[0], out=models / variant / "seed0", seed=0, device="cpu", show_progress=False)
    for run in ("Source", "AdaBN", "ST_MT", "STvM"):
        evaluate_stage(EvaluateParams(maps=2), model_path=models / run / "seed0/model.pt", images=val[0], labels=val[1],
                       out=evals / run / "seed0", device="cpu", input_size=(48, 32), show_progress=False)
        _copy_seed(root, run, offset={"Source": 1.5, "AdaBN": 0.5, "ST_MT": -2.0, "STvM": 3.25}[run])
    for role in ("source", "target"):
        manifest = {"dataset": "gta5" if role == "source" else "cityscapes", "root": str(root / f"data/raw/synth/{role}"),
                    "size": [48, 32], "city": None, "splits": {"val": {"count": 6}}, "sources_sha256": "ab" * 32}
        (root / f"data/prepared/{role}/manifest.json").write_text(json.dumps(manifest))
    (root / "data/raw/synth").mkdir(parents=True)
    (root / "data/raw/synth/synth.json").write_text(json.dumps({"generator": "stvm.data.synth", "version": 1, "seed": 0,
                                                  "width": 48, "height": 32, "shift": 1.0, "counts": {"source": 6}}))
    (root / "params.yaml").write_text(yaml.safe_dump({"report": {"tile_width": 64}}))
    yield root
    shutil.rmtree(root, ignore_errors=True)  # ~0.6 GB of real-size checkpoints


def _copy_seed(root: Path, run: str, offset: float) -> None:
    """seed1 = seed0 with miou, one IoU and (when present) the silhouette shifted by ``offset``."""
    for base in ("results/models", "results/eval"):
        shutil.copytree(root / base / run / "seed0", root / base / run / "seed1",
                        ignore=shutil.ignore_patterns("ckpt", "model.pt"))
    folder = root / "results/eval" / run / "seed1"
    for name, key in (("metrics", "miou"), ("scores", "iou/road"), ("metrics", "silhouette/class_mean")):
        m = json.loads((folder / f"{name}.json").read_text())
        if key in m:
            m[key] += offset
        (folder / f"{name}.json").write_text(json.dumps(m))
    info = json.loads((folder / "eval_info.json").read_text())
    info["evaluation"]["wall_seconds"] = 1.23
    (folder / "eval_info.json").write_text(json.dumps(info))
    curve = root / "results/models" / run / "seed1/plots/adapt.csv"
    rows = list(csv.DictReader(curve.read_text().splitlines())) if curve.is_file() else []
    if rows:  # a second seed whose loss differs: the curves' seed band has a width (AdaBN logs no rows)
        for r in rows:
            r["loss"] = repr(float(r["loss"]) * 1.5)
        with curve.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _report(root: Path, out: Path, capsys=None) -> int:
    return main(["report", "--params", str(root / "params.yaml"), "--eval", str(root / "results/eval"),
                 "--models", str(root / "results/models"), "--prepared", str(root / "data/prepared"),
                 "--synth", str(root / "data/raw/synth/synth.json"), "--out", str(out)])


class ReportHTML(HTMLParser):
    """Tables (by data-name: header + rows of cell text) and <img> sources of the report page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, str] = {}
        self._table = self._row = self._cell = self._figure = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a["data-name"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.images[self._figure] = a["src"]

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(table: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(table[0], r, strict=True)) for r in table[1:]]


def _md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables keyed by their ### title."""
    out, title, lines = {}, None, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("| ") and title and not lines[i - 1].startswith("|"):
            block = list(itertools.takewhile(lambda row: row.startswith("|"), lines[i:]))
            cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in block if not row.startswith("|---")]
            out[title] = [dict(zip(cells[0], r, strict=True)) for r in cells[1:]]
    return out


@pytest.fixture(scope="module")
def report(run_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report"
    assert _report(run_tree, out) == 0
    parser = ReportHTML()
    parser.feed((out / "report.html").read_text())
    return out, parser


def _metrics(root: Path, run: str, seed: int) -> dict:
    """metrics.json (numbers only) and scores.json (per class) of one evaluation, merged."""
    folder = root / "results/eval" / run / f"seed{seed}"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values()), metrics  # dvc metrics: numbers only
    return {**metrics, **json.loads((folder / "scores.json").read_text())}


def test_report_has_every_table_plot_and_provenance_field(run_tree, report):
    out, page = report
    for name in ("table4_ablation", "table1_per_class", "table6_variance", "table7_silhouette", "per_seed",
                 "provenance", "datasets", "wall_time", "open_choices"):
        assert name in page.tables and len(page.tables[name]) > 1, name
        assert (out / "tables" / f"{name}.csv").is_file()
    expected = {"train_loss", "train_lr", "qualitative", "miou_vs_iterations"} | {f"adapt_{c}" for c in (
        "loss", "loss_metric", "lr", "reliability", "metric_fraction", "buffer_fill")}
    assert expected <= set(page.images)
    for name in expected:
        src = page.images[name]
        assert src.startswith("data:image/png;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.std() > 5, name  # a real picture, not a blank
        assert (out / "figures" / f"{name}.png").read_bytes() == base64.b64decode(src.split(",", 1)[1])
    prov = {r["field"]: r["value"] for r in _rows(page.tables["provenance"])}
    assert set(FIELDS) <= set(prov) and all(prov[f] for f in FIELDS)
    assert prov["params sha256"] == hashlib.sha256((run_tree / "params.yaml").read_bytes()).hexdigest()
    assert prov["git revision"] == "unknown" or len(prov["git revision"]) == 40
    page_text = (out / "report.html").read_text()
    assert not any(x in page_text for x in ('src="http', "<link", "<script"))  # self-contained
    assert "paper (real data)" in page_text and "this run" in page_text
    assert "Learning curve" in page_text and "oracle model selection" in page_text
    qual = cv2.imdecode(np.frombuffer((out / "figures/qualitative.png").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    # image, GT, Source, AdaBN, ST_MT, STvM, STvM's errors, reliability and teacher confidence, 4-pixel gaps
    assert qual.shape[1] == 9 * 64 + 8 * 4


def test_report_draws_the_panel_from_files_without_any_model(run_tree, report, tmp_path):
    """The report rebuilds no network: with every model.pt gone it draws the same panel from maps/."""
    out, _ = report
    bare = tmp_path / "tree"
    shutil.copytree(run_tree, bare, ignore=shutil.ignore_patterns("*.pt", "ckpt"))  # snapshots too
    assert not list(bare.rglob("model.pt"))
    assert _report(bare, tmp_path / "report") == 0
    assert (tmp_path / "report/figures/qualitative.png").read_bytes() == (out / "figures/qualitative.png").read_bytes()
    next((bare / "results/eval/STvM/seed0/maps").glob("*_reliability.png")).unlink()
    assert _report(bare, tmp_path / "report2") == 2  # a missing map is an error naming it, no half report
    assert not (tmp_path / "report2").exists()
    (bare / "results/eval/Source/seed0/maps/index.json").unlink()  # an evaluation from before maps/
    assert _report(bare, tmp_path / "report3") == 2 and not (tmp_path / "report3").exists()


def test_report_numbers_equal_the_metrics_files(run_tree, report):
    out, page = report
    per_seed = {(r["run"], r["seed"]): r for r in _rows(page.tables["per_seed"])}
    for run in ("Source", "AdaBN", "ST_MT", "STvM"):
        seeds = [_metrics(run_tree, run, s) for s in (0, 1)]
        for s, m in enumerate(seeds):
            assert per_seed[(run, str(s))]["miou"] == f"{m['miou']:.1f}"
        ablation = {r["run"]: r for r in _rows(page.tables["table4_ablation"])}[run]
        values = [m["miou"] for m in seeds]
        assert ablation["this run: mIoU mean"] == f"{np.mean(values):.1f}"
        assert ablation["this run: std"] == f"{np.std(values, ddof=1):.1f}"
        assert ablation["this run: min"] == f"{min(values):.1f}"
        per_class = {r["method"]: r for r in _rows(page.tables["table1_per_class"]) if r["source"] == "this run"}
        assert per_class[run]["Road"] == f"{np.mean([m['iou/road'] for m in seeds]):.1f}"
    sil = {r["method"]: r for r in _rows(page.tables["table7_silhouette"]) if r["source"] == "this run"}
    assert set(sil) == {"ST_MT", "STvM"}  # STvM and ST_MT's probe carry a metric network (Source does not)
    cm = [_metrics(run_tree, "STvM", s)["silhouette/class_mean"] for s in (0, 1)]
    assert sil["STvM"]["class mean"] == f"{np.mean(cm):.1f}"
    wall = {(r["stage"], r["run"], r["seed"]): r["wall seconds"] for r in _rows(page.tables["wall_time"])}
    adapt_wall = json.loads((run_tree / "results/models/STvM/seed0/adapt_metrics.json").read_text())["wall_seconds"]
    assert wall[("adapt", "STvM", "0")] == f"{adapt_wall:.2f}" and wall[("evaluate", "STvM", "1")] == "1.23"
    device = {(r["stage"], r["run"], r["seed"]): r["device"] for r in _rows(page.tables["wall_time"])}
    assert device[("evaluate", "STvM", "1")] == "cpu" and device[("adapt", "STvM", "0")] == "cpu"
    # CSVs keep full precision
    with (out / "tables/per_seed.csv").open() as fh:
        rows = {(r["run"], r["seed"]): r for r in csv.DictReader(fh)}
    assert float(rows[("STvM", "1")]["miou"]) == _metrics(run_tree, "STvM", 1)["miou"]


def _png(out: Path, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer((out / "figures" / f"{name}.png").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.std() > 5, name  # a real picture, not a blank
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_per_class_delta_against_source_and_adabn_equals_the_scores(run_tree, report):
    """Each adapted run's mean IoU over seeds minus Source's and AdaBN's, class by class and for mIoU."""
    out, page = report
    rows = {(r["run"], r["Δ against"]): r for r in _rows(page.tables["per_class_delta"])}
    assert list(rows) == [("AdaBN", "Source"), ("ST_MT", "Source"), ("STvM", "Source"), ("ST_MT", "AdaBN"),
                          ("STvM", "AdaBN")]

    def mean(run, key):
        values = [_metrics(run_tree, run, s).get(key) for s in (0, 1)]
        return None if None in values else float(np.mean(values))

    checked = 0
    for (run, ref), row in rows.items():
        for column, key in (("Road", "iou/road"), ("Sidewalk", "iou/sidewalk"), ("Building", "iou/building"),
                            ("Sky", "iou/sky"), ("Car", "iou/car"), ("mIoU", "miou")):
            mine, theirs = mean(run, key), mean(ref, key)
            if mine is None or theirs is None:
                assert row[column] == "–", (run, ref, column)
                continue
            assert row[column][0] in "+-" and abs(float(row[column]) - (mine - theirs)) <= 0.05 + 1e-9, (run, ref, column)
            checked += 1
    assert checked >= 10  # the fixture's classes have IoUs on both sides
    with (out / "tables/per_class_delta.csv").open() as fh:
        full = {(r["run"], r["Δ against"]): r for r in csv.DictReader(fh)}
    assert float(full[("STvM", "Source")]["Road"]) == pytest.approx(mean("STvM", "iou/road") - mean("Source", "iou/road"))
    orange = np.array((230, 159, 0))  # AdaBN's colour: a bar against Source, none against itself

    def has(img, colour):
        return int((np.abs(img.astype(int) - colour).max(axis=2) <= 2).sum())

    assert has(_png(out, "per_class_delta_source"), orange) > 200
    assert has(_png(out, "per_class_delta_adabn"), orange) == 0
    assert has(_png(out, "per_class_delta_adabn"), np.array((86, 180, 233))) > 200  # ST_MT's bars


def test_confusion_figure_of_every_run(report):
    out, page = report
    for run in ("Source", "AdaBN", "ST_MT", "STvM"):
        assert f"confusion_{run}" in page.images
        img = _png(out, f"confusion_{run}")
        assert img.shape[0] > 19 * 26 and img.shape[1] > 19 * 26  # 19 x 19 cells of 26 pixels, and the names
    assert _png(out, "confusion_Source").tobytes() != _png(out, "confusion_STvM").tobytes()


def test_paper_columns_come_from_the_shipped_tables(report):
    _, page = report
    with (PAPER_DIR / "table4_ablation.csv").open() as fh:
        ref = {r["Name"]: r for r in csv.DictReader(fh)}
    ablation = {r["run"]: r for r in _rows(page.tables["table4_ablation"])}
    assert ablation["STvM"]["paper (real data): mIoU"] == ref["STvM"]["mIoU"]
    assert ablation["ST_MT"]["paper (real data): mIoU"] == ref["STMT"]["mIoU"]
    # AdaBN is ours (no paper value); the paper's Δ is recomputed between the rows shown that have a
    # paper value (Source, ST_MT, STvM), not copied from its table
    assert ablation["AdaBN"]["paper (real data): mIoU"] == "–" and ablation["AdaBN"]["this run: Δ to row above"]
    assert ablation["ST_MT"]["paper (real data): Δ to row above"] == \
        f"{float(ref['STMT']['mIoU']) - float(ref['Source']['mIoU']):+.1f}"
    assert ablation["STvM"]["paper (real data): Δ to row above"] == \
        f"{float(ref['STvM']['mIoU']) - float(ref['STMT']['mIoU']):+.1f}"
    paper_rows = [r for r in _rows(page.tables["table1_per_class"]) if r["source"] == "paper (real data)"]
    assert {r["method"] for r in paper_rows} >= {"STvM (w/o MST)", "STvM (w MST)"}
    assert all(r["network"] == "DeepLabV2" for r in paper_rows)
    variance = {r["method"]: r for r in _rows(page.tables["table6_variance"]) if r["source"] == "paper (real data)"}
    assert (variance["STvM"]["mean"], variance["STvM"]["std"], variance["STvM"]["min"]) == ("53.55", "0.25", "53.26")


def test_markdown_matches_the_html(report):
    out, page = report
    md = (out / "report.md").read_text()
    tables = _md_tables(md)
    assert {"Ablation (Table IV)", "Per-class IoU, 19 classes", "Provenance", "Open choices"} <= set(tables)
    assert tables["Ablation (Table IV)"] == _rows(page.tables["table4_ablation"])
    assert tables["Every run and seed"] == _rows(page.tables["per_seed"])
    for link in [line[line.index("(") + 1: -1] for line in md.splitlines() if line.startswith("![")]:
        assert (out / link).is_file(), link
    assert paper.CITATION in md


@pytest.mark.parametrize("damage", ["corrupt_metrics", "missing_confusion", "bad_confusion_matrix",
                                    "missing_adapt_metrics", "bad_csv"])
def test_bad_input_names_the_file_and_writes_nothing(run_tree, tmp_path, capsys, damage):
    root = tmp_path / "tree"
    shutil.copytree(run_tree, root, ignore=shutil.ignore_patterns("*.pt", "ckpt"))  # the report loads no model
    target = {
        "corrupt_metrics": root / "results/eval/ST_MT/seed1/metrics.json",
        "missing_confusion": root / "results/eval/Source/seed0/confusion.json",
        "bad_confusion_matrix": root / "results/eval/AdaBN/seed1/confusion.json",
        "missing_adapt_metrics": root / "results/models/STvM/seed1/adapt_metrics.json",
        "bad_csv": root / "results/models/ST_MT/seed0/plots/adapt.csv",
    }[damage]
    if damage == "corrupt_metrics":
        target.write_text('{"miou": 3')
    elif damage == "bad_csv":
        target.write_text("iteration,loss\n1,abc\n")
    elif damage == "bad_confusion_matrix":  # the right protocol, but no 19 x 20 counts
        target.write_text(json.dumps({"protocol": 19, "matrix": [[1, 2]]}))
    else:
        target.unlink()
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("previous report")
    assert _report(root, out) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["report.md"]  # the previous report is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no temporary left


def test_report_params_are_validated():
    assert params_from_dict({"evaluate": {"maps": 0}}).evaluate.maps == 0
    with pytest.raises(StvmError, match=r"^evaluate\.maps"):
        params_from_dict({"evaluate": {"maps": -1}})
    with pytest.raises(StvmError, match=r"^report\.colour"):
        params_from_dict({"report": {"colour": 1}})


def test_report_figures_are_dvc_plots_inside_the_report_output():
    dvc = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())
    assert "results/report/figures" in dvc["plots"]
    assert dvc["stages"]["report"]["outs"] == ["results/report"]  # the figures are written by the report stage


def test_synth_generator_listed_only_when_the_data_came_from_it(run_tree):
    res = collect_results(run_tree / "results/eval", run_tree / "results/models", run_tree / "data/prepared",
                          run_tree / "data/raw/synth/synth.json")
    assert res.synth is not None and res.synth["generator"] == "stvm.data.synth"
    other = run_tree / "elsewhere/synth.json"  # e.g. a paper setting: the synth stage ran, the data are real
    other.parent.mkdir(exist_ok=True)
    shutil.copy(run_tree / "data/raw/synth/synth.json", other)
    res = collect_results(run_tree / "results/eval", run_tree / "results/models", run_tree / "data/prepared", other)
    assert res.synth is None and "synth" not in res.files


def test_adaptation_curves_are_seed_means_with_a_min_max_band_over_common_iterations():
    from stvm.report.stage import adapt_series
    from stvm.report.tables import Results

    res = Results(evals={"ST_MT": {0: {}, 1: {}, 2: {}}, "STvM": {0: {}}, "Source": {0: {}}},
                  curves={"ST_MT": {0: {"iteration": [10, 20, 30], "loss": [1.0, 2.0, 3.0], "w": [1.0] * 3},
                                    1: {"iteration": [10, 20], "loss": [3.0, 6.0], "w": [1.0] * 2},
                                    2: {"iteration": [10, 20], "other": [9.0, 9.0]}},
                          "STvM": {0: {"iteration": [10, 20], "loss": [5.0, 4.0], "w": [0.5, 0.7]}}})
    series, flat = adapt_series(res, "loss")
    assert flat == [] and [s.label for s in series] == ["ST_MT (mean, band min-max of 2 seeds)", "STvM (1 seed)"]
    mt, stvm = series
    # seed 2 has no 'loss'; iteration 30 is not in seed 1
    assert (mt.x, mt.y, mt.band) == ([10, 20], [2.0, 4.0], ([1.0, 2.0], [3.0, 6.0]))
    assert (stvm.x, stvm.y, stvm.band) == ([10, 20], [5.0, 4.0], None)  # one seed: no band to draw
    series, flat = adapt_series(res, "w")
    assert flat == ["ST_MT"] and [s.label for s in series] == ["STvM (1 seed)"]  # w = 1 throughout: not drawn
    assert adapt_series(res, "absent") == ([], [])
