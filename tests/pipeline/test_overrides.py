"""One override mechanism, honoured by both engines: Snakemake's --config and DVC's -S reach the
commands (the trained model records the value), and both engines compute the same bits."""

from __future__ import annotations

import json

import pytest
import torch

from stvm.training import load_checkpoint
from tests.pipeline.conftest import run

pytestmark = pytest.mark.pipeline
SOURCE = "results/models/Source/seed0/model.pt"


def _threads(repo) -> int:
    return json.loads((repo / "results/models/Source/seed0/train_info.json").read_text())["threads"]


def _weights(path):
    return load_checkpoint(path)["model"]


def test_snakemake_config_lands_in_the_trained_model(repo_copy):
    run(["snakemake", "--cores", "2", "--config", "train_source={lr: 0.0123}", "--", SOURCE], repo_copy)
    assert load_checkpoint(repo_copy / SOURCE)["params"]["lr"] == 0.0123
    written = list((repo_copy / ".snakemake/stvm").glob("params-*.yaml"))
    assert len(written) == 1 and "lr: 0.0123" in written[0].read_text()


def test_dvc_set_lands_in_the_trained_model(repo_copy):
    run(["dvc", "exp", "run", "-S", "train_source.lr=0.0123", "train_source"], repo_copy)
    assert load_checkpoint(repo_copy / SOURCE)["params"]["lr"] == 0.0123


def test_both_engines_give_the_same_bits_whatever_omp_num_threads(repo_copy):
    run(["dvc", "repro", "train_source"], repo_copy)  # run() exports OMP_NUM_THREADS=1; the params say 2
    by_dvc = _weights(repo_copy / SOURCE)
    assert _threads(repo_copy) == 2
    run(["snakemake", "--cores", "2", "--forcerun", "train_source", "--", SOURCE], repo_copy)  # exports 2
    by_snakemake = _weights(repo_copy / SOURCE)
    assert _threads(repo_copy) == 2
    assert by_dvc.keys() == by_snakemake.keys()
    assert all(torch.equal(by_dvc[k], by_snakemake[k]) for k in by_dvc)
