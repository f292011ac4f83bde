"""Thread control: common.threads from the params alone (OMP_NUM_THREADS overwritten), applied to torch,
declared per Snakemake rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from stvm.threads import apply_threads, thread_count

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("configured", "env"), [
    (4, {}), (4, {"OMP_NUM_THREADS": "2"}), (1, {"OMP_NUM_THREADS": "8"}), (3, {"OMP_NUM_THREADS": "x"}),
])
def test_thread_count_is_the_param_whatever_the_environment(configured, env):
    assert thread_count(configured, env) == configured


def test_apply_threads_overwrites_the_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as a Snakemake job with threads: 1, or a user's shell
    try:
        assert apply_threads(2) == 2 and torch.get_num_threads() == 2
        import os

        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
        assert apply_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_every_snakemake_rule_declares_its_threads():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow/rules").glob("*.smk")))
    rules = [b for b in re.split(r"(?m)^(?=rule \w+:)", text) if b.startswith("rule ")]
    assert len(rules) >= 7
    for block in rules:
        assert re.search(r'(?m)^    threads: (config\["common"\]\["threads"\]|lookup\(dpath="\w+/workers", within=config, default=1\)|1)$', block), block.splitlines()[0]
