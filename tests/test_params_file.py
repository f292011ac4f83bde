"""Params files merged over their ``_base_`` (stvm/params_file.py) and written whole by ``stvm params --out``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stvm.config import load_params
from stvm.errors import StvmError
from stvm.params_file import merged, read_params_file

ROOT = Path(__file__).resolve().parents[1]


def test_mappings_merge_key_by_key_and_anything_else_replaces():
    base = {"common": {"seed": 0, "threads": 4}, "evaluate": {"scales": [0.75, 1.0]}, "seeds": [0, 1]}
    over = {"common": {"threads": 2}, "evaluate": {"scales": [1.0]}, "variants": ["STvM"]}
    assert merged(base, over) == {"common": {"seed": 0, "threads": 2}, "evaluate": {"scales": [1.0]},
                                  "seeds": [0, 1], "variants": ["STvM"]}
    assert list(merged(base, over)) == ["common", "evaluate", "seeds", "variants"]  # the base's order first
    assert base["common"] == {"seed": 0, "threads": 4}  # the base is not changed


def test_a_base_chain_is_read_relative_to_each_file(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b/root.yaml").write_text("adapt: {alpha: 4.0, beta: 0.7}\n")
    (tmp_path / "b/mid.yaml").write_text("_base_: root.yaml\nadapt: {beta: 0.5}\n")
    (tmp_path / "top.yaml").write_text("_base_: b/mid.yaml\nadapt: {n_f: 64}\n")
    assert read_params_file(tmp_path / "top.yaml") == {"adapt": {"alpha": 4.0, "beta": 0.5, "n_f": 64}}
    a = load_params(tmp_path / "top.yaml").adapt
    assert (a.alpha, a.beta, a.n_f) == (4.0, 0.5, 64)


@pytest.mark.parametrize("files, message", [
    ({"p.yaml": "_base_: gone.yaml\n"}, r"gone\.yaml: params file not found"),
    ({"p.yaml": "_base_: [a.yaml]\n"}, r"p\.yaml: _base_: expected a file name relative to this file, got list"),
    ({"p.yaml": "_base_: q.yaml\n", "q.yaml": "_base_: p.yaml\n"}, r"p\.yaml: _base_: the chain of bases comes back"),
    ({"p.yaml": "_base_: q.yaml\n", "q.yaml": "adapt: {q_m: 3}\n"}, r"p\.yaml: adapt\.q_m: expected a value"),
])
def test_a_bad_base_is_one_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(StvmError, match=message):
        load_params(tmp_path / "p.yaml")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stvm", "params", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


def test_params_out_writes_the_merged_validated_file_make_paper_installs(tmp_path):
    setting, out = ROOT / "configs/paper/synthia_dlv3.yaml", tmp_path / "params.yaml"
    proc = _cli("--params", str(setting), "--set", "seeds=[0,1]", "--out", str(out))
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    raw = yaml.safe_load(out.read_text())
    assert "_base_" not in raw and raw["seeds"] == [0, 1] and raw["adapt"]["tau_mocm"] == 0.8  # from the base
    assert load_params(out) == load_params(setting, ["seeds=[0,1]"])
    header = " ".join(line[2:] for line in out.read_text().splitlines() if line.startswith("# "))
    assert header.startswith(f"Written by `stvm params --params {setting} --set 'seeds=[0,1]' --out {out}`")
    refused = _cli("--params", str(out), "--out", str(out))
    assert refused.returncode == 2 and "output is the input" in refused.stderr


def test_make_paper_writes_params_yaml_through_stvm_params_out():
    recipe = (ROOT / "Makefile").read_text().split("\npaper-params:", 1)[1].split("\n\n", 1)[0]
    assert "-m stvm params --params configs/paper/$(SETTING).yaml --out params.yaml" in recipe
    assert "cp " not in recipe  # an overlay copied as is would lose its base
