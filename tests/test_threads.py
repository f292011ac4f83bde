"""Thread control: common.threads capped by OMP_NUM_THREADS, applied to torch, declared per Snakemake rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from stvm.threads import apply_threads, thread_count

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("configured", "env", "expected"), [
    (4, {}, 4), (4, {"OMP_NUM_THREADS": "2"}, 2), (1, {"OMP_NUM_THREADS": "8"}, 1), (3, {"OMP_NUM_THREADS": "x"}, 3),
    (3, {"OMP_NUM_THREADS": "0"}, 3),
])
def test_thread_count_is_the_param_capped_by_omp_num_threads(configured, env, expected):
    assert thread_count(configured, env) == expected


def test_apply_threads_sets_torch_and_the_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert apply_threads(3) == 1
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert apply_threads(2) == 2 and torch.get_num_threads() == 2
        import os

        assert os.environ["MKL_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)


def test_every_snakemake_rule_declares_its_threads():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow/rules").glob("*.smk")))
    rules = [b for b in re.split(r"(?m)^(?=rule \w+:)", text) if b.startswith("rule ")]
    assert len(rules) >= 7
    for block in rules:
        assert re.search(r'(?m)^    threads: (config\["common"\]\["threads"\]|lookup\(dpath="\w+/workers", within=config, default=1\)|1)$', block), block.splitlines()[0]
