import warnings

import pytest
import torch

from stvm.errors import StvmError
from stvm.models.weights import load_model_checkpoint
from stvm.train import train_source
from stvm.training import load_checkpoint
from tests.fixtures.tiny import same_weights, train_params, write_prepared


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
    params.write_text("common: {device: cpu}\ntrain_source: {arch: deeplabv2_tiny, init: random, iterations: 4, "
                      "crop: 32, log_every: 2, ckpt_every: 2}\n")
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "stvm", "train_source", "--quiet", "--params", str(params),
           "--images", str(data[0]), "--labels", str(data[1]), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out/train_info.json").read_text())["world_size"] == 2
    model, meta = load_model_checkpoint(tmp_path / "out/model.pt")
    assert meta["stage"] == "train_source"


def _relabel_same_size(path):
    """Rewrite an uncompressed label PNG with other ids: same byte count, same mtime."""
    import os

    import numpy as np
    from PIL import Image

    st = path.stat()
    lab = np.asarray(Image.open(path)).copy()
    lab[: lab.shape[0] // 2] = 13  # the top half becomes car
    Image.fromarray(lab).save(path, compress_level=0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or `rsync -t` would
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_relabelled_input_of_the_same_size_is_not_resumed(tmp_path, capsys):
    from PIL import Image

    data = write_prepared(tmp_path / "data")
    for p in data[1].glob("*.png"):  # uncompressed: the size depends on the shape only
        Image.open(p).save(p, compress_level=0)
    cfg = train_params()
    _train(cfg, data, tmp_path / "run", stop_after=3)
    _relabel_same_size(data[1] / "00002.png")
    _train(cfg, data, tmp_path / "run")
    assert "starting from scratch" in capsys.readouterr().err
    _train(cfg, data, tmp_path / "fresh")
    a, _ = load_model_checkpoint(tmp_path / "run/model.pt")
    b, _ = load_model_checkpoint(tmp_path / "fresh/model.pt")
    assert same_weights(a, b)


def test_loss_curve_after_a_resume_off_a_logging_step_equals_uninterrupted(tmp_path):
    data = write_prepared(tmp_path / "data")
    cfg = train_params(iterations=8, log_every=4, ckpt_every=100)
    _train(cfg, data, tmp_path / "full")
    _train(cfg, data, tmp_path / "resumed", stop_after=3)  # checkpoint at 3, inside the first window
    _train(cfg, data, tmp_path / "resumed")
    full = (tmp_path / "full/plots/train.csv").read_text()
    assert full.count("\n") == 3 and (tmp_path / "resumed/plots/train.csv").read_text() == full


def test_a_diverged_run_leaves_no_nonfinite_checkpoint_and_no_header_only_plot(tmp_path):
    data = write_prepared(tmp_path / "data")
    with pytest.raises(StvmError, match=r"NaN/inf at iteration \d+"):
        _train(train_params(lr=1e12, iterations=6, log_every=6, ckpt_every=1), data, tmp_path / "nan")
    ckpt = tmp_path / "nan/ckpt/last.pt"
    if ckpt.exists():  # the steps before the divergence may be saved, never a non-finite one
        state = load_checkpoint(ckpt)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not (tmp_path / "nan/plots/train.csv").exists() and not (tmp_path / "nan/model.pt").exists()


def test_checkpoints_with_nonfinite_weights_are_refused(tmp_path):
    from stvm.models.deeplab import build_model
    from stvm.models.weights import save_model_checkpoint

    model = build_model("deeplabv2_tiny", 19)
    with torch.no_grad():
        model.classifier.branches[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(StvmError, match="NaN/inf"):
        save_model_checkpoint(model, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())


def test_the_model_records_its_input_size(tmp_path):
    data = write_prepared(tmp_path / "data", size=(40, 24))
    _train(train_params(iterations=2, crop=24), data, tmp_path / "run")  # a crop within the 40x24 frames
    assert load_model_checkpoint(tmp_path / "run/model.pt")[1]["input_size"] == [40, 24]
