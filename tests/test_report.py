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


def test_missing_results_is_a_user_error(tmp_path, capsys):
    assert main(["summary", "--eval", str(tmp_path / "none")]) == 2
    assert "no evaluation results" in capsys.readouterr().err
