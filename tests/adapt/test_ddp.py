"""``stvm adapt`` under torchrun: 2 CPU processes (gloo) on tiny data, STvM variant.

One torchrun launch (``tests/adapt/ddp_worker.py``) runs an uninterrupted adaptation and a stopped
then resumed one; the worker dumps every rank's full state at each checkpoint.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stvm.models.weights import load_model_checkpoint
from stvm.training import load_checkpoint
from tests.fixtures.tiny import source_model_and_target

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ("common: {{device: cpu}}\nadapt: {{iterations: 6, crop: 32, log_every: 2, ckpt_every: 3, ema_interval: 2, "
          "ema_lambda: 0.5, buffer_size: 3, n_mocm: 2, samples_per_class: 8, n_f: 16, tau_mocm: 3.9, {bn}}}\n")
BN = {"bn-source-train": "bn_init: source, bn_mode: train", "bn-target-frozen": "bn_init: target, bn_mode: frozen"}


def assert_same(a, b, where=""):
    """Exact equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


@pytest.fixture(scope="module", params=list(BN))
def runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt_ddp")
    _, tgt = source_model_and_target(root)
    (root / "p.yaml").write_text(PARAMS.format(bn=BN[request.param]))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "tests.adapt.ddp_worker", str(root / "p.yaml"),
           str(root / "source/model.pt"), str(tgt), str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield root
    shutil.rmtree(root, ignore_errors=True)  # ~1.7 GB of real-size checkpoints per BN setting


def _state(root, run, rank, it=6):
    return torch.load(root / run / "ckpt" / f"rank{rank}_it{it}.pt", weights_only=True)


def test_ranks_hold_identical_state(runs):
    for it in (3, 6):
        s0, s1 = _state(runs, "full", 0, it), _state(runs, "full", 1, it)
        assert {"student", "teacher", "opt", "metric", "opt_metric", "thresholds", "buffers"} == set(s0)
        assert_same(s0, s1, f"it{it}")
    s = _state(runs, "full", 0)
    assert int(s["buffers"]["count"].sum()) > 0 and bool(s["thresholds"]["seen"].any())
    assert any(not torch.equal(v, s["teacher"][k]) for k, v in s["student"].items())  # a real mean teacher


def test_ranks_see_different_crops_and_only_rank0_writes(runs):
    fed = [json.loads((runs / f"fed_rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(fed[0]) == [str(i) for i in range(6)]
    assert all(fed[0][it][0] != fed[1][it][0] for it in fed[0])  # sharded data
    metrics = json.loads((runs / "full/adapt_info.json").read_text())
    assert metrics["world_size"] == 2 and metrics["variant"] == "STvM"
    ckpt = load_checkpoint(runs / "full/ckpt/last.pt")
    assert len(ckpt["rng_ranks"]) == 2 and not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])
    rows = (runs / "full/plots/adapt.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]


def test_resumed_equals_uninterrupted(runs):
    full, res = load_checkpoint(runs / "full/ckpt/last.pt"), load_checkpoint(runs / "res/ckpt/last.pt")
    assert_same(full["nets"], res["nets"], "nets")
    # (the saved global RNG states themselves differ: each DataLoader iterator draws its base seed from
    # the global RNG, once per launch; nothing in the STvM/deeplabv2 step reads the global RNG)
    assert_same(_state(runs, "full", 1), _state(runs, "res", 1), "rank1")
    a, meta_a = load_model_checkpoint(runs / "full/model.pt")
    b, meta_b = load_model_checkpoint(runs / "res/model.pt")
    assert_same(a.state_dict(), b.state_dict(), "model")
    assert_same(meta_a["metric_head"], meta_b["metric_head"], "metric_head")
    rows_full = (runs / "full/plots/adapt.csv").read_text().splitlines()
    rows_res = (runs / "res/plots/adapt.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows_full] == [r.split(",")[0] for r in rows_res]
    # row 4 averages iterations 3-4 uninterrupted but only 4 after the resume at 3; rows 2 and 6 agree
    assert rows_full[1] == rows_res[1] and rows_full[3] == rows_res[3]


def test_bn_statistics_follow_the_setting(runs):
    """Target + frozen: every rank starts from the same re-estimated statistics and keeps them;
    source + train: the statistics start from the source model's and move."""
    source, _ = load_model_checkpoint(runs / "source/model.pt")
    src = {k: v for k, v in source.state_dict().items() if k.endswith("running_mean")}
    frozen = "bn_init: target" in (runs / "p.yaml").read_text()
    for rank in (0, 1):
        s3, s6 = _state(runs, "full", rank, 3)["student"], _state(runs, "full", rank, 6)["student"]
        stats = [k for k in s6 if k.endswith("running_mean")]
        assert stats and all(k in src for k in stats)
        assert all(torch.equal(s3[k], s6[k]) for k in stats) == frozen
        assert any(not torch.equal(s6[k], src[k]) for k in stats)
