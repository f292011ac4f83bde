"""`stvm export`: TorchScript and ONNX files that reproduce PyTorch's logits, with their preprocessing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import stvm.export as export
from stvm.cli import main
from stvm.errors import StvmError
from stvm.models.deeplab import build_model
from stvm.models.weights import save_model_checkpoint

try:
    import onnxruntime
except ImportError:  # the `export` extra; `make test` installs it from requirements.lock
    onnxruntime = None

needs_ort = pytest.mark.skipif(onnxruntime is None, reason="onnxruntime not installed (pip install 'stvm[export]')")


def checkpoint(path: Path, arch: str) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(arch, 19)
    for m in model.modules():  # non-trivial BN statistics, so a wrong BN folding would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_model_checkpoint(model, path, protocol=19, stage="test")
    return path, model.eval()


def run_file(fmt: str, path: Path, x: torch.Tensor) -> torch.Tensor:
    if fmt == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path))(x)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])


@pytest.mark.parametrize("arch", ["deeplabv2_r18", "deeplabv3_r18"])
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=needs_ort)])
def test_export_round_trips_within_the_stated_tolerance(tmp_path, capsys, arch, fmt):
    model_path, model = checkpoint(tmp_path / "model.pt", arch)
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.ts")
    assert main(["export", "--model", str(model_path), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    info = json.loads(out.with_name(out.name + ".json").read_text())
    assert printed["format"] == info["format"] == fmt and info["check"]["passed"]
    assert info["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and info["output"]["trainid"] == list(range(19))
    # an input size and batch neither the trace nor the built-in check used: the axes are dynamic
    x = torch.randn(3, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = model(x)
    got = run_file(fmt, out, x)
    assert got.shape == expected.shape == (3, 19, 40, 56)
    assert float((got - expected).abs().max()) <= export.TOL * max(1.0, float(expected.abs().max()))
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.999


@needs_ort
def test_an_onnx_export_that_cannot_be_traced_is_one_line_naming_the_model(tmp_path, capfd):
    model_path, _ = checkpoint(tmp_path / "model.pt", "deeplabv2_r18")
    out = tmp_path / "model.onnx"
    # opset 9 has no ceil-mode max-pool with dynamic input sizes (DeepLabV2's stem): the exporter fails
    code = main(["export", "--model", str(model_path), "--out", str(out), "--opset", "9"])
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(model_path) in lines[0] and "opset 9" in lines[0], captured.err
    assert captured.out == ""  # the exporter's graph dump does not reach the terminal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # nothing half-written


def test_a_file_that_differs_from_pytorch_is_refused_and_removed(tmp_path, monkeypatch):
    model_path, _ = checkpoint(tmp_path / "model.pt", "deeplabv2_r18")
    real = export._run_exported
    monkeypatch.setattr(export, "_run_exported", lambda fmt, path, x: real(fmt, path, x) + 0.05)
    with pytest.raises(StvmError, match="differs from PyTorch"):
        export.export_model(model_path, tmp_path / "model.ts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_missing_extra_and_unknown_suffix_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(StvmError, match=r"pip install 'stvm\[export\]'"):
        export.export_model(tmp_path / "model.pt", tmp_path / "model.onnx")
    with pytest.raises(StvmError, match="cannot tell the format"):
        export.export_model(tmp_path / "model.pt", tmp_path / "model.bin")
    assert export.export_format(tmp_path / "model.bin", "onnx") == "onnx"
