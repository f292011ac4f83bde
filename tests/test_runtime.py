"""stvm.runtime.interpreter: what every stage writes into its *_info.json about where it ran."""

from __future__ import annotations

import os
import sys

from stvm import runtime


def test_interpreter_names_the_python_and_no_container_on_the_host(monkeypatch):
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime.os.path, "isdir", lambda p: False if p == "/.singularity.d" else os.path.isdir(p))
    monkeypatch.setattr(runtime.os.path, "exists", lambda p: False if p == "/.dockerenv" else os.path.exists(p))
    assert runtime.interpreter() == {"python": sys.executable, "container": None}


def test_interpreter_sees_apptainer_and_docker(monkeypatch):
    monkeypatch.setattr(runtime.os.path, "isdir", lambda p: False)
    monkeypatch.setattr(runtime.os.path, "exists", lambda p: p == "/.dockerenv")
    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    assert runtime.interpreter()["container"] == "docker"
    monkeypatch.setenv("APPTAINER_CONTAINER", "/x/stvm.sif")
    assert runtime.interpreter()["container"] == "apptainer"
