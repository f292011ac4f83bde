"""The torchvision import shim: schemas defined only when missing, only once; torchvision usable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stvm import compat
from stvm.compat import ensure_torchvision_ops, torchvision

REPO = Path(__file__).resolve().parents[1]


def _has_schema(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the shim acts at import time, once per process)."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_schemas_exist_after_import():
    assert _has_schema("nms") and _has_schema("qnms")
    assert set(ensure_torchvision_ops()) <= {"nms", "qnms"}


def test_second_call_defines_nothing():
    libs_before = len(compat._LIBS)
    first = ensure_torchvision_ops()
    second = ensure_torchvision_ops()  # would raise "registered multiple times" if it defined again
    assert first == second
    assert len(compat._LIBS) == libs_before
    assert len(set(first)) == len(first)


def test_torchvision_models_and_transforms_v2_work():
    import torchvision.transforms.v2 as T

    net = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    img = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    flipped = T.Compose([T.RandomHorizontalFlip(p=1.0)])(img)
    assert torch.equal(flipped, img.flip(-1))


def test_only_missing_schemas_are_defined():
    # simulate a build whose real ops registered nms (but not qnms) before the shim ran
    out = _run(
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'FRAGMENT')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "from stvm import compat\n"
        "import json; print(json.dumps(compat.ensure_torchvision_ops()))\n"
    )
    assert json.loads(out) == ["qnms"]


def test_torchvision_extension_gets_its_chance_before_the_shim_defines():
    out = _run(
        "import json, torch, torch.library\n"
        "events = []\n"
        "real_load, real_define = torch.ops.load_library, torch.library.Library.define\n"
        "def load(path, *a, **k):\n"
        "    events.append(['load', str(path)])\n"
        "    return real_load(path, *a, **k)\n"
        "def define(self, schema, *a, **k):\n"
        "    events.append(['define', schema])\n"
        "    return real_define(self, schema, *a, **k)\n"
        "torch.ops.load_library, torch.library.Library.define = load, define\n"
        "import stvm.compat\n"
        "print(json.dumps(events))\n"
    )
    events = json.loads(out)
    loads = [i for i, (kind, arg) in enumerate(events) if kind == "load" and "torchvision" in arg]
    defines = [
        i
        for i, (kind, arg) in enumerate(events)
        if kind == "define" and arg.startswith(("nms", "qnms"))
    ]
    assert loads, events
    assert not defines or loads[0] < defines[0], events


def test_op_lookup_without_the_private_torch_api(monkeypatch):
    """Another torch version may lack ``_dispatch_find_schema_or_throw``: the public lookup answers."""
    monkeypatch.delattr(torch._C, "_dispatch_find_schema_or_throw")
    assert compat._op_exists("nms") and not compat._op_exists("no_such_op_19")
