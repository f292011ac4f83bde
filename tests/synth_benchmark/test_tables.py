"""Tests of stvm.synth_benchmark.tables: Table IV with the gap closed, per class, the cost table."""

from __future__ import annotations

import json
from pathlib import Path

from stvm.synth_benchmark import tables
from tests.synth_benchmark.fakes import write_eval


def test_table4_reads_the_gap_each_run_closes(tmp_path: Path) -> None:
    for run, seeds in {"Source": [20.0], "Oracle": [60.0], "STvM": [30.0, 34.0, 32.0]}.items():
        for i, miou in enumerate(seeds):
            write_eval(tmp_path / "eval" / run / f"seed{i}", miou, [miou] * 6, [True] * 6)
    text = tables.table4(tmp_path)
    assert "| STvM | 32.0 ± 2.0 | 30.0 | 3 | 30 % |" in text
    assert "| Oracle | 60.0 ± n/a | 60.0 | 1 | 100 % |" in text
    assert "| road | 20.0 | 32.0 | 60.0 |" in tables.per_class(tmp_path)


def test_the_cost_table_gives_seconds_per_iteration(tmp_path: Path) -> None:
    for rel, its, wall in (("geometry/both/models/Source/seed0", 3000, 1500.0), ("curves/models/STvM/seed0", 0, 9.0)):
        (tmp_path / rel).mkdir(parents=True)
        kind = "train" if "Source" in rel else "adapt"
        (tmp_path / rel / f"{kind}_metrics.json").write_text(json.dumps({"iterations": its, "wall_seconds": wall}))
    text = tables.cost_table(tmp_path)
    assert "| geometry/both/models/Source/seed0 | 3000 | 1500 | 0.500 |" in text and "curves" not in text


def test_the_calibration_table_gives_the_gap_per_class(tmp_path: Path) -> None:
    write_eval(tmp_path / "source_val/Source/seed0", 40.0, [90.0, 70.0, 60.0, 20.0, 0.0, 0.0], [True] * 4 + [False] * 2)
    write_eval(tmp_path / "eval/Source/seed0", 15.0, [30.0, 20.0, 10.0, 0.0, 0.0, 0.0], [True] * 3 + [False] * 3)
    text = tables.calibration_table(tmp_path, 0, 1.3)
    assert "| road | 90.0 | 30.0 | 60.0 |" in text and "| wall | 20.0 | 0.0 | 20.0 |" in text
    assert "| fence |" not in text  # in neither val set
    assert "| **mIoU** | **40.0** | **15.0** | **25.0** |" in text and "synth.shift 1.3" in text
