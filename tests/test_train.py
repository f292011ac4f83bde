import warnings

import pytest
import torch

from stvm.errors import StvmError
from stvm.io import load_checkpoint
from stvm.models.weights import load_model_checkpoint
from stvm.train import train_source
from tests.tiny import train_params, write_prepared


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor)
    )


def _train(cfg, data, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_source(cfg, images=data[0], labels=data[1], out=out, protocol=19, seed=0, device="cpu",
                            show_progress=False, **kw)


def test_resume_equals_uninterrupted(tmp_path):
    data = write_prepared(tmp_path / "data")
    cfg = train_params()
    _train(cfg, data, tmp_path / "full")
    assert _train(cfg, data, tmp_path / "resumed", stop_after=4) == {"stopped_at": 4}
    assert load_checkpoint(tmp_path / "resumed/ckpt/last.pt")["iteration"] == 4
    _train(cfg, data, tmp_path / "resumed")
    a, _ = load_model_checkpoint(tmp_path / "full/model.pt")
    b, meta = load_model_checkpoint(tmp_path / "resumed/model.pt")
    assert same_weights(a, b)
    assert meta["protocol"] == 19 and meta["seed"] == 0
    rows_full = (tmp_path / "full/plots/train.csv").read_text().splitlines()
    rows_res = (tmp_path / "resumed/plots/train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows_full] == [r.split(",")[0] for r in rows_res]


def test_other_seed_gives_other_model_and_stale_checkpoint_is_ignored(tmp_path, capsys):
    data = write_prepared(tmp_path / "data")
    _train(train_params(), data, tmp_path / "a", stop_after=3)
    _train(train_params(lr=5e-3), data, tmp_path / "a")  # params changed: must not resume
    assert "starting from scratch" in capsys.readouterr().err
    _train(train_params(lr=5e-3), data, tmp_path / "b")
    a, _ = load_model_checkpoint(tmp_path / "a/model.pt")
    b, _ = load_model_checkpoint(tmp_path / "b/model.pt")
    assert same_weights(a, b)


def test_loss_goes_down(tmp_path):
    data = write_prepared(tmp_path / "data")
    _train(train_params(iterations=30, log_every=5), data, tmp_path / "r")
    losses = [float(r.split(",")[1]) for r in (tmp_path / "r/plots/train.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0]


def test_nan_is_reported_with_its_iteration(tmp_path):
    data = write_prepared(tmp_path / "data")
    with pytest.raises(StvmError, match=r"NaN/inf at iteration \d+"):
        _train(train_params(lr=1e12, iterations=4), data, tmp_path / "nan")


def test_two_process_ddp_on_cpu(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = write_prepared(tmp_path / "data")
    params = tmp_path / "p.yaml"
    params.write_text("common: {device: cpu}\ntrain_source: {arch: deeplabv2_r18, init: random, iterations: 4, "
                      "crop: 32, log_every: 2, ckpt_every: 2}\n")
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "stvm", "train_source", "--quiet", "--params", str(params),
           "--images", str(data[0]), "--labels", str(data[1]), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out/train_metrics.json").read_text())["world_size"] == 2
    model, meta = load_model_checkpoint(tmp_path / "out/model.pt")
    assert meta["stage"] == "train_source"
