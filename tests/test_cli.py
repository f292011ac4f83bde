import os
import subprocess
import sys
from pathlib import Path

import pytest

from stvm.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["synth", "prepare", "train_source", "adapt", "evaluate", "score", "bench", "summary", "import", "params", "report",
          "predict", "export"]


def test_every_stage_is_a_subcommand():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(STAGES) <= set(choices)


@pytest.mark.parametrize("stage", STAGES)
def test_help(stage, capsys):
    with pytest.raises(SystemExit) as exc:
        main([stage, "--help"])
    assert exc.value.code == 0
    assert "usage: stvm " + stage in capsys.readouterr().out


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "stvm", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_user_error_is_one_line_without_traceback(tmp_path):
    proc = _cli("prepare", "--dataset", "gta5", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(tmp_path / "nope") in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_params_name_file_and_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("adapt:\n  ema_lambda: 7\n")
    proc = _cli("params", "--params", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"stvm params: error: {bad}: adapt.ema_lambda: expected a value in [0.0, 1.0], got 7.0"


def test_missing_checkpoint_is_a_user_error(tmp_path):
    proc = _cli("evaluate", "--model", str(tmp_path / "m.pt"), "--images", str(tmp_path / "val"), "--labels",
                str(tmp_path / "val"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "m.pt" in proc.stderr and "Traceback" not in proc.stderr


def test_import_external_checkpoint_fails_clearly(tmp_path):
    import torch

    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "ext.pth")
    proc = _cli("import", "--pth", str(tmp_path / "ext.pth"), "--out", str(tmp_path / "m.pt"))
    assert proc.returncode == 2 and "ext.pth" in proc.stderr and "missing" in proc.stderr
    assert not (tmp_path / "m.pt").exists()
