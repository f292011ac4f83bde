"""stvm.curve_log: the CSV of every column and dvclive's one-TSV-per-column layout, from the same rows."""

from __future__ import annotations

import csv
from pathlib import Path

from stvm.curve_log import CurveLog

COLUMNS = ["iteration", "loss", "lr"]


def _tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_each_column_gets_its_own_tsv_with_the_csv_rows(tmp_path: Path) -> None:
    w = CurveLog(tmp_path / "plots/adapt.csv", COLUMNS)
    for it in (10, 20, 30):
        w.row({"iteration": it, "loss": 1.0 / it, "lr": 0.5 - it / 100, "ignored": 7})
    rows = list(csv.DictReader((tmp_path / "plots/adapt.csv").open()))
    assert sorted(p.name for p in (tmp_path / "plots/adapt").iterdir()) == ["loss.tsv", "lr.tsv"]
    for col in ("loss", "lr"):
        assert _tsv(tmp_path / f"plots/adapt/{col}.tsv") == [["iteration", col]] + [[r["iteration"], r[col]] for r in rows]


def test_a_resume_drops_the_rows_past_the_checkpoint_in_every_file(tmp_path: Path) -> None:
    path = tmp_path / "plots/adapt.csv"
    w = CurveLog(path, COLUMNS)
    for it in (10, 20, 30):
        w.row({"iteration": it, "loss": float(it), "lr": 0.1})
    w = CurveLog(path, COLUMNS, resume_from=20)
    w.row({"iteration": 30, "loss": -1.0, "lr": 0.1})
    assert [r[1] for r in _tsv(tmp_path / "plots/adapt/loss.tsv")] == ["loss", "10.0", "20.0", "-1.0"]


def test_a_run_without_rows_writes_headers_only_and_nothing_before_finish(tmp_path: Path) -> None:
    w = CurveLog(tmp_path / "plots/adapt.csv", COLUMNS)
    assert not (tmp_path / "plots").exists()
    w.finish()
    assert (tmp_path / "plots/adapt.csv").read_text() == "iteration,loss,lr\n"
    assert _tsv(tmp_path / "plots/adapt/lr.tsv") == [["iteration", "lr"]]
