"""The one place that makes ``import torchvision`` work with the CPU-only torch wheel.

torchvision 0.28.0 on PyPI is built against CUDA torch. With the CPU wheel of torch 2.13.0 its
``torchvision.ops`` registration fails with ``operator torchvision::nms does not exist`` because
the compiled ops library cannot load. stvm uses none of those ops (no NMS anywhere in semantic
segmentation), but the *schemas* must exist for the Python side of torchvision to import. Defining
them with ``torch.library.define`` -- only when they are missing -- is enough for models,
transforms v2 and DeepLabV3. With a CUDA build of torch the real ops exist and nothing is defined.

Import torchvision through this module (``from stvm.compat import torchvision``) and nowhere else.
"""

from __future__ import annotations

import torch

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_MISSING_OPS: list[str] = []
_LIBS: list[torch.library.Library] = []  # keep the fragments alive for the process lifetime


def _op_exists(name: str) -> bool:
    """Whether ``torchvision::<name>`` has a schema (a private torch API: other torch versions may
    lack it, then the public ``torch.ops`` lookup answers)."""
    find = getattr(torch._C, "_dispatch_find_schema_or_throw", None)
    if find is None:
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            return False
        return True
    try:
        find(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def _try_load_extension() -> None:
    """Give torchvision's compiled ops (``_C``) the first chance to register the real schemas.

    With a matching (CUDA) torch the library loads and defines ``nms``/``qnms`` itself; defining them
    first would make its registration fail as a duplicate. With the CPU torch it fails to load
    (it needs ``libtorch_cuda.so``), which is exactly the case the shim is for.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for lib in sorted(Path(folder).glob("_C*.so")):
            try:
                torch.ops.load_library(str(lib))
            except (OSError, RuntimeError, ImportError):
                pass


def ensure_torchvision_ops() -> list[str]:
    """Define the ``torchvision::nms``/``qnms`` schemas if the compiled ops did not register them.

    Returns the names that had to be defined (empty with a working torchvision build).
    """
    _try_load_extension()
    for name in ("nms", "qnms"):
        if name in _MISSING_OPS or _op_exists(name):
            continue
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define(f"{name}{_SCHEMA}")
        _LIBS.append(lib)
        _MISSING_OPS.append(name)
    return list(_MISSING_OPS)


ensure_torchvision_ops()

import torchvision  # noqa: E402  (must come after the schemas exist)

__all__ = ["torchvision", "ensure_torchvision_ops"]
