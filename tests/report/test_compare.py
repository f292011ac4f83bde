"""`stvm compare`: DVC experiments' per-run means without the dependency-hash columns.

The fixture is real `dvc exp show --json` output of a demo clone after
`dvc exp run -S adapt.lr_metric=0.0003` (DVC 3.67), trimmed to a few params and deps.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from stvm.cli import main
from stvm.errors import StvmError
from stvm.report.compare import changed_params, compare_markdown, experiments, load_exp_show

FIXTURE = Path(__file__).parents[1] / "fixtures" / "exp_show.json"


def _rows():
    return experiments(load_exp_show(FIXTURE))


def test_rows_are_workspace_baseline_and_experiment_with_their_summaries():
    rows = _rows()
    assert [r.label for r in rows] == ["workspace", "main", "lr_metric_03 (b23dc67)"]
    assert set(rows[1].runs) == {"Source", "AdaBN", "ST_MT", "STvM"}
    assert rows[1].runs["STvM"]["miou_mean"] == pytest.approx(19.1595)
    assert rows[2].runs["STvM"]["miou_mean"] == pytest.approx(19.3577)


def test_only_the_param_that_differs_is_a_column():
    assert changed_params(_rows()) == ["adapt.lr_metric"]


def test_table_puts_each_experiments_mean_on_the_runs_line_and_stays_narrow():
    text = compare_markdown(_rows())
    stvm = next(line for line in text.splitlines() if line.startswith("| STvM |"))
    assert stvm.split(" | ")[2:] == ["19.2 ± 0.6 (18.4)", "19.4 ± 0.4 (18.9) |"]
    source = next(line for line in text.splitlines() if line.startswith("| Source |"))
    assert "±" not in source  # one seed: no spread to show
    runs = [line.split(" | ")[0][2:] for line in text.splitlines()[10:]]
    assert runs == ["Source", "AdaBN", "ST_MT", "STvM"]  # the report's order
    assert max(len(line) for line in text.splitlines()) < 100
    assert "md5" not in text and ".dir" not in text


def test_without_a_committed_baseline_the_table_says_how_to_make_one():
    show = json.loads(FIXTURE.read_text())
    assert "make baseline" not in compare_markdown(experiments(show))  # a param differs: no hint
    show[1]["data"]["metrics"] = {}  # the demo's results never committed: the baseline row has none
    exp_params = show[1]["experiments"][0]["revs"][0]["data"]["params"]
    show[0]["data"]["params"] = exp_params  # the workspace holds the experiment's params after the run
    text = compare_markdown(experiments(show))
    assert "(no param differs)" in text and "make baseline" in text


def test_a_failed_or_metric_less_row_is_dropped_and_nothing_left_says_so():
    show = json.loads(FIXTURE.read_text())
    show[0]["data"]["metrics"] = {}
    assert [r.label for r in experiments(show)][0] == "main"
    for base in show:
        base["data"]["metrics"] = {}
        for exp in base.get("experiments") or []:
            for rev in exp["revs"]:
                rev["data"]["metrics"] = {}
    assert experiments(show) == []
    assert "run `dvc exp run` first" in compare_markdown([])


def test_bad_saved_output_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "show.json"
    bad.write_text("{not json")
    with pytest.raises(StvmError, match="show.json"):
        load_exp_show(bad)
    assert main(["compare", "--from", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "show.json" in err and "not JSON" in err
    bad.write_text('{"a": 1}')
    assert main(["compare", "--from", str(bad)]) == 2


def test_cli_prints_the_comparison(capsys):
    assert main(["compare", "--from", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "| experiment | adapt.lr_metric |" in out and "| STvM |" in out


def test_dvc_missing_or_failing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not a DVC repository
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # the venv's dvc
    assert main(["compare"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dvc exp show --json --no-pager` failed" in err
    monkeypatch.setenv("PATH", str(tmp_path))  # no dvc on PATH
    with pytest.raises(StvmError, match="dvc not found on PATH"):
        load_exp_show()
