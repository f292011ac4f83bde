"""``stvm export``: an stvm checkpoint as TorchScript or ONNX, checked against PyTorch, with its preprocessing.

The exported graph maps a normalised ``N x 3 x H x W`` float32 batch to logits ``N x C x H x W``
(upsampled to the input size), with batch, height and width dynamic. Before the file is put in place
its logits are compared with the PyTorch model's on a seeded random input of another size than the
one traced (batch 2, 72 x 104); the export fails unless every logit agrees within
``|exported - pytorch| <= TOL * max(1, max |pytorch|)``, ``TOL = 1e-3``. The measured difference,
the preprocessing (RGB, x/255, ImageNet mean/std), the class order and the output convention are
written beside the file as ``FILE.json``. ONNX uses the TorchScript-based exporter (opset 17 by
default; the torch.export-based one needs ``onnxscript``) and is checked with onnxruntime (the
``export`` extra: ``pip install 'stvm[export]'``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stvm.data.labels import CLASS_NAMES, PROTOCOL_CLASSES
from stvm.data.images import IMAGENET_MEAN, IMAGENET_STD
from stvm.digest import file_sha256
from stvm.errors import StvmError
from stvm.io import atomic_path, refuse_overlap, write_json
from stvm.models.weights import load_model_checkpoint

FORMATS = ("onnx", "torchscript")
TOL = 1e-3
TRACE_SHAPE = (1, 3, 64, 96)
CHECK_SHAPE = (2, 3, 72, 104)
DEFAULT_OPSET = 17


class Logits(nn.Module):
    """The network as a plain ``image -> logits`` function (no optional outputs) for tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)


def export_format(out: Path, fmt: str | None) -> str:
    """``fmt`` if given, else from the suffix: ``.onnx`` -> onnx, ``.pt``/``.ts``/``.torchscript`` -> torchscript."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise StvmError(None, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = out.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt", ".ts", ".torchscript"):
        return "torchscript"
    raise StvmError(out, "cannot tell the format from the suffix (use .onnx or .pt, or pass --format)")


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """Discard what Python and native code write to stdout (the ONNX exporter prints whole graphs)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _torchscript(net: nn.Module, example: Tensor, path: Path) -> None:
    traced = torch.jit.trace(net, example, check_trace=False)
    torch.jit.save(traced, str(path))


def _onnx(net: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        net, (example,), str(path), dynamo=False, opset_version=opset, input_names=["image"],
        output_names=["logits"], dynamic_axes={"image": axes, "logits": axes},
    )


def _run_exported(fmt: str, path: Path, x: Tensor) -> Tensor:
    """The exported file's logits on ``x`` (TorchScript via torch.jit.load, ONNX via onnxruntime)."""
    if fmt == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path), map_location="cpu")(x)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def _require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise StvmError(None, f"ONNX export needs the export extra ({err.name} is not installed): "
                        "pip install 'stvm[export]' (onnx, onnxruntime)") from None


def sidecar(fmt: str, meta: dict[str, Any], model_path: Path, check: dict[str, Any], opset: int | None) -> dict:
    """What a deployment needs besides the file: preprocessing, input/output rules, classes, the check."""
    protocol = int(meta.get("protocol", 19))
    return {
        "format": fmt, "opset": opset,
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                  "preprocess": "x = (rgb_uint8 / 255 - mean) / std", "mean": IMAGENET_MEAN.tolist(),
                  "std": IMAGENET_STD.tolist(),
                  "size": "any batch, height and width (dynamic axes); stvm predicts each image at its own size"},
        "output": {"name": "logits", "layout": "NCHW", "size": "same height and width as the input",
                   "postprocess": "argmax over C gives a class index; trainid[index] gives the Cityscapes trainId",
                   "trainid": list(PROTOCOL_CLASSES[protocol]),
                   "classes": [CLASS_NAMES[t] for t in PROTOCOL_CLASSES[protocol]]},
        "check": check,
        "source": {"model": str(model_path), "sha256": file_sha256(model_path), "arch": meta.get("arch"),
                   "protocol": protocol},
    }


def export_model(model_path: Path, out: Path, *, fmt: str | None = None, opset: int = DEFAULT_OPSET) -> dict:
    """Export ``model_path`` to ``out`` (+ ``out.json``) after checking its logits; return the sidecar."""
    model_path, out = Path(model_path), Path(out)
    for written in (out, out.with_name(out.name + ".json")):  # the file and its sidecar never replace the model
        refuse_overlap(written, [model_path])
    fmt = export_format(out, fmt)
    if fmt == "onnx":
        _require_onnxruntime()
    model, meta = load_model_checkpoint(model_path)
    net = Logits(model).eval()
    gen = torch.Generator().manual_seed(0)
    example, x = torch.randn(TRACE_SHAPE, generator=gen), torch.randn(CHECK_SHAPE, generator=gen)
    with torch.inference_mode():
        expected = net(x)
    with atomic_path(out) as tmp:
        try:
            with warnings.catch_warnings(), _silenced_stdout():
                warnings.simplefilter("ignore")  # tracer/exporter chatter; a failing export prints its graph
                _torchscript(net, example, tmp) if fmt == "torchscript" else _onnx(net, example, tmp, opset)
                got = _run_exported(fmt, tmp, x)
        except Exception as err:  # noqa: BLE001 - any tracer/exporter/runtime failure is this model's
            raise StvmError(model_path, f"cannot be exported to {fmt}"
                            f"{f' opset {opset}' if fmt == 'onnx' else ''}: {_first_line(err)}") from None
        scale = max(1.0, float(expected.abs().max()))
        diff = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
        check = {"input_shape": list(CHECK_SHAPE), "traced_shape": list(TRACE_SHAPE), "max_abs_diff": diff,
                 "max_abs_logit": float(expected.abs().max()), "tolerance": f"{TOL} * max(1, max|logit|)",
                 "passed": diff <= TOL * scale}
        if not check["passed"]:
            raise StvmError(model_path, f"{fmt} export differs from PyTorch: max |logit difference| {diff:.3g} "
                            f"> {TOL * scale:.3g} (output shape {tuple(got.shape)})")
        info = sidecar(fmt, meta, model_path, check, opset if fmt == "onnx" else None)
        write_json(out.with_name(out.name + ".json"), info)
    return info
