"""Tables over finished runs (``stvm.report.tables``, ``stvm summary``): rows, spreads, seed design."""

import json

import pytest

from stvm.cli import main
from stvm.report.tables import ablation_markdown, ablation_rows, collect


def _write(root, name, seed, miou):
    p = root / name / f"seed{seed}" / "metrics.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"miou": miou}))


def test_ablation_rows_from_metrics_files(tmp_path, capsys):
    for seed, (a, b, c) in enumerate([(30.0, 40.0, 50.0), (32.0, 41.0, 53.0), (31.0, 45.0, 50.0)]):
        _write(tmp_path, "Source", seed, a)
        _write(tmp_path, "ST_MT", seed, b)
        _write(tmp_path, "STvM", seed, c)
    rows = ablation_rows(collect(tmp_path))
    assert [r["name"] for r in rows] == ["Source", "ST_MT", "STvM"]
    assert rows[0]["mean"] == pytest.approx(31.0) and rows[0]["std"] == pytest.approx(1.0)
    assert rows[2]["min"] == 50.0 and rows[2]["delta"] == pytest.approx(51.0 - 42.0)
    assert "| STvM | 51.0 ± 1.7 | 50.0 | 3 | +9.0 |" in ablation_markdown(rows)
    assert main(["summary", "--eval", str(tmp_path)]) == 0
    assert "| Source | 31.0 ± 1.0 |" in capsys.readouterr().out
    out = tmp_path.parent / "summary"
    (out / "stale.json").parent.mkdir()
    (out / "stale.json").write_text("{}")
    assert main(["summary", "--eval", str(tmp_path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ST_MT.json", "STvM.json", "Source.json"]  # replaced whole
    stvm = json.loads((out / "STvM.json").read_text())
    assert stvm == {"miou_mean": pytest.approx(51.0), "miou_std": pytest.approx(1.7321, abs=1e-4),
                    "miou_min": 50.0, "seeds": 3}


def test_summary_of_one_seed_shows_no_zero_spread(tmp_path, capsys):
    _write(tmp_path, "Source", 0, 13.0)
    _write(tmp_path, "STvM", 0, 19.5)
    _write(tmp_path, "STvM", 1, 20.5)
    assert main(["summary", "--eval", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| Source | 13.0 ± n/a (1 seed) | 13.0 | 1 |" in out and "± 0.0" not in out
    assert "| STvM | 20.0 ± 0.7 | 19.5 | 2 | +7.0 |" in out


def test_missing_results_is_a_user_error(tmp_path, capsys):
    assert main(["summary", "--eval", str(tmp_path / "none")]) == 2
    assert "no evaluation results" in capsys.readouterr().err


def test_seed_design_is_read_from_the_adapt_metrics():
    from stvm.report.tables import Results, seed_design

    shared = Results(train={"Source": {0: {}}, "STvM": {s: {"source_seed": 0} for s in (0, 1, 2)}})
    assert "Adaptation seeds 0, 1, 2 all start from one source model (seed 0)" in seed_design(shared)
    per_seed = Results(train={"STvM": {s: {"source_seed": s} for s in (0, 1)}})
    assert "per-seed-source design" in seed_design(per_seed)
    assert seed_design(Results()) == ""
