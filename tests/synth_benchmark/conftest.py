"""The two presets' params, loaded once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from stvm.config import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    """The paper-geometry preset (``make benchmark``)."""
    return load_params(ROOT / "configs/synth_benchmark/paper_geometry.yaml")


@pytest.fixture(scope="module")
def calibrated():
    """The calibrated preset (``make calibrate``, ``make ablation``)."""
    return load_params(ROOT / "configs/synth_benchmark/calibrated.yaml")
