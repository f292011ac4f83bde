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
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout, from any folder
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


# --- one convention on every command (issue 26, item 7) ----------------------------------------------

WRITES_NOTHING = {"compare": "prints a table of DVC's experiments", "bench": "prints figures; its data are temporaries",
                  "deps": "--write rewrites dvc.yaml in place"}


def _subcommands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def _options(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _reads_params(parser) -> bool:
    """A command reads params exactly when its handler calls ``stvm.cli._params`` (derived, not listed)."""
    import inspect

    return "_params(args" in inspect.getsource(parser.get_default("fn"))


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_has_a_description_quiet_and_params_and_out_where_they_apply(name):
    parser = _subcommands()[name]
    options = _options(parser)
    assert (parser.description or "").strip(), f"stvm {name}: no description"
    assert "--quiet" in options, f"stvm {name}: no --quiet"
    reads = _reads_params(parser)
    assert ("--params" in options) == reads and ("--set" in options) == reads, \
        f"stvm {name}: reads params: {reads}, has --params: {'--params' in options}"
    assert ("--out" in options) != (name in WRITES_NOTHING), f"stvm {name}: --out and WRITES_NOTHING disagree"


def test_the_convention_check_catches_a_command_without_its_flags():
    import argparse

    bare = argparse.ArgumentParser(description="")
    assert "--quiet" not in _options(bare) and not (bare.description or "").strip()
    from stvm import cli

    bare.set_defaults(fn=cli.cmd_export)
    assert _reads_params(bare) and "--params" not in _options(bare)  # what the test above would refuse


def test_the_top_level_help_lists_every_command_once_by_group(capsys):
    from stvm.cli_parser import GROUPS

    names = list(_subcommands())
    grouped = [n for group in GROUPS.values() for n in group]
    assert sorted(grouped) == sorted(names), "a command in no group, or a group naming no command"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    description = text.split("positional arguments")[0]
    for title, group in GROUPS.items():
        assert f"{title}:\n  {', '.join(group)}" in description
    assert "other:" not in description and "plus `score` and `bench`" not in text


def test_the_readme_names_every_command():
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in _subcommands() if f"`stvm {n}" not in readme and f"stvm {n} " not in readme]
    assert not missing, f"README never names: {missing}"


# --- params: the file, params.yaml here, or the built-in defaults (issue 26, item 6) ------------------

def test_without_params_yaml_the_built_in_defaults_are_used_and_said_once(tmp_path):
    proc = _cli("params", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "stvm params: no params.yaml here and no --params: using the built-in defaults (the paper's; "
        "`stvm params` lists them)"]
    assert "| `adapt.iterations` | `20000` |" in proc.stdout
    assert _cli("params", "--quiet", cwd=tmp_path).stderr == ""


def test_params_yaml_here_is_read_without_the_note(tmp_path):
    (tmp_path / "params.yaml").write_text("adapt:\n  ema_lambda: 7\n")
    proc = _cli("params", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "stvm params: error: params.yaml: adapt.ema_lambda: expected a value in [0.0, 1.0], got 7.0"


def test_a_named_params_file_must_exist_and_set_is_checked_on_the_defaults(tmp_path):
    proc = _cli("prepare", "--params", "mine.yaml", "--dataset", "folder", "--root", "frames", "--out", "p",
                cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "stvm prepare: error: mine.yaml: params file not found"
    proc = _cli("params", "--quiet", "--set", "prepare.aspect=squash", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "stvm params: error: the built-in defaults with --set prepare.aspect=squash: prepare.aspect: expected one of "
        "['stretch', 'crop', 'pad'], got 'squash'")


@pytest.mark.parametrize("command", ["report", "synth_benchmark"])
def test_a_command_that_records_its_params_file_needs_one(tmp_path, command):
    proc = _cli(command, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"stvm {command}: error: params.yaml: params file not found (stvm {command} "
                                  "records the params file it runs with: pass --params FILE)")


def test_score_writes_out_and_takes_its_protocol_from_the_params(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    for folder, value in (("pred", 0), ("gt", 0)):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((4, 6), value, np.uint8)).save(tmp_path / folder / "a.png")
    params = tmp_path / "p.yaml"
    params.write_text("common:\n  protocol: 16\n")
    assert main(["score", "--params", str(params), "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--out", str(tmp_path / "scores.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "scores.json").read_text()) == printed
    assert printed["protocol"] == 16
