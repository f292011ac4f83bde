"""stvm.workflow_params: the Snakefile's own `container` key (--config container=...) is not a stage
parameter, so it neither fails validation nor makes the commands read another params file."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from stvm.workflow_params import params_file

ROOT = Path(__file__).resolve().parents[1]


def test_container_key_leaves_the_params_file_as_it_is(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params_file({**config, "container": "docker://registry.example/stvm:0.1.0"}) == "params.yaml"
    changed = {**config, "container": "build/stvm.sif", "seeds": [0, 1, 2, 3]}
    written = Path(params_file(changed))
    assert written != Path("params.yaml") and "container" not in yaml.safe_load(written.read_text())
