"""Where a model's weights come from: backbone init and our checkpoints (imports of other files:
``stvm.models.importers``).

Every loader checks keys and shapes itself and fails with one ``StvmError`` that lists missing keys,
unexpected keys and shape mismatches (never a ``load_state_dict`` traceback). Files are read with
``torch.load(weights_only=True)`` only (``stvm.training.load_checkpoint``); a file that needs arbitrary
unpickling is refused. Common wrappers are unwrapped: ``{'state_dict': ...}`` / ``{'model': ...}``
and the ``module.`` prefix of ``DataParallel``.

The key/shape checking and unwrapping here (``check_state``, ``_load_checked``, ``_unwrap``) are
shared with every importer of ``stvm.models.importers``.
"""

from __future__ import annotations

import http.client
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stvm.digest import file_sha256
from stvm.errors import StvmError
from stvm.models.deeplab import ARCHS, NO_PRETRAINED, SegModel, build_model, check_dilations, paper_dilations
from stvm.training import check_finite, load_checkpoint, save_checkpoint

FORMAT = "stvm-model-v1"
_IMAGENET_ENUMS = {101: "ResNet101_Weights", 50: "ResNet50_Weights", 18: "ResNet18_Weights"}
# the torchvision ImageNet weights of each arch (none for deeplabv2_tiny: NO_PRETRAINED)
_DEPTH = {"deeplabv2_r101": 101, "deeplabv3_r50": 50, "deeplabv2_r18": 18, "deeplabv3_r18": 18}
_SHOW = 8  # keys listed per category in an error message
MAX_CLASSES = 255  # trainIds are uint8 with 255 = ignore


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _summarise(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def check_state(expected: dict[str, Any], given: dict[str, Any]) -> str | None:
    """Compare a candidate state dict with ``expected``; a one-line problem description or None.

    ``num_batches_tracked`` may be missing (old PyTorch files lack it); everything else must match
    in name and shape.
    """
    missing = sorted(
        k for k in expected.keys() - given.keys() if not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(given.keys() - expected.keys())
    shapes = [
        f"{k} file {_shape(given[k])} vs model {_shape(expected[k])}"
        for k in sorted(expected.keys() & given.keys())
        if isinstance(expected[k], Tensor)
        and (not isinstance(given[k], Tensor) or given[k].shape != expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_summarise(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_summarise(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {_summarise(shapes)}")
    return "; ".join(parts) or None


def check_loaded_finite(state: dict[str, Any], path: Path, part: str = "") -> None:
    """Refuse weights read from ``path`` that hold NaN/inf, before any network uses them."""
    bad = [k for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise StvmError(path, f"{len(bad)} {part}weight tensors hold NaN/inf (first: {bad[0]}); a network with "
                              "non-finite weights is refused")


def _load_checked(module: torch.nn.Module, state: dict[str, Any], path: Path, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` behind ``check_state``'s readable error (and
    ``check_loaded_finite``'s: every loader of weights goes through here)."""
    expected = module.state_dict()
    problem = check_state(expected, state)
    if problem:
        raise StvmError(path, f"does not fit {what}: {problem}")
    check_loaded_finite(state, path)
    state = dict(state)
    for key, value in expected.items():  # fill what old files lack (checked above)
        state.setdefault(key, value)
    module.load_state_dict(state, strict=True)


def _unwrap(
    obj: dict[str, Any], path: Path, prefixes: tuple[str, ...] = ("module.",)
) -> dict[str, Any]:
    """The bare state dict inside ``obj``: unwrap ``state_dict``/``model``, strip ``prefixes``."""
    if obj.get("format") == FORMAT:
        raise StvmError(
            path, f"this is already an stvm model checkpoint ({FORMAT}); use it directly"
        )
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise StvmError(path, f"not a state dict: key {str(key)[:40]!r} is a {type(key).__name__}, not a name")
        stripped = True
        while stripped:
            stripped = False
            for p in prefixes:
                if key.startswith(p):
                    key, stripped = key[len(p) :], True
        out[key] = value
    return out


def init_backbone(model: SegModel, init: str) -> str:
    """Initialise F: ``"imagenet"`` (torchvision weights), ``"random"`` (warns) or a local ``.pth``.

    A local file is a torchvision-layout ResNet state dict (``conv1.weight``, ``layer1.0...``,
    optionally ``fc.*``, which is ignored). Returns a one-line description for the provenance.
    """
    if init == "random":
        warnings.warn(
            f"{model.arch}: backbone left at random init (no pretrained weights); "
            "expect poor results",
            UserWarning,
            stacklevel=2,
        )
        return "random init (no pretrained backbone)"
    if init == "imagenet":
        if model.arch in NO_PRETRAINED:
            raise StvmError(None, f"{model.arch} has no ImageNet weights (an arch for tests and smoke runs); "
                                  "use init 'random' or the path of a state dict of its own layout")
        state, desc, where = _imagenet_state(model.arch)
        _load_checked(model.backbone, _backbone_keys(state), where, f"{model.arch} backbone")
        return desc
    path = Path(init)
    if not path.is_file():
        raise StvmError(
            path,
            "backbone init not found (init must be 'imagenet', 'random' or the path "
            "of a torchvision ResNet state_dict .pth)",
        )
    state = _unwrap(load_checkpoint(path), path)
    _load_checked(
        model.backbone,
        _backbone_keys(state),
        path,
        f"{model.arch} backbone (torchvision ResNet layout)",
    )
    return f"local file {path} (sha256 {file_sha256(path)[:12]})"


def _backbone_keys(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision ResNet keys -> ``ResNetBackbone`` keys (identical, minus the ImageNet ``fc``)."""
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _imagenet_state(arch: str) -> tuple[dict[str, Any], str, Path]:
    """torchvision's ImageNet weights from the torch hub cache, downloading them if absent.

    Returns the state dict, a provenance line and the cache path (for error messages).
    """
    from stvm.compat import torchvision

    enum_name = _IMAGENET_ENUMS[_DEPTH[arch]]
    weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
    file_name = weights.url.rsplit("/", 1)[-1]
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        state = torch.hub.load_state_dict_from_url(
            weights.url, progress=False, check_hash=True, weights_only=True
        )
    except (
        OSError,
        RuntimeError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
        http.client.HTTPException,
    ) as err:
        raise StvmError(
            None,
            (
                f"cannot get ImageNet weights {enum_name}.IMAGENET1K_V1 "
                f"({type(err).__name__}: {err}); downloads are impossible without network: "
                f"fetch {weights.url} elsewhere and pass its local path as init, "
                f"or put it in {hub_dir}/"
            ),
        ) from None
    return (
        state,
        f"imagenet: torchvision {enum_name}.IMAGENET1K_V1 ({file_name})",
        hub_dir / file_name,
    )


def save_model_checkpoint(model: SegModel, path: str | Path, **meta: Any) -> None:
    """Write ``{"format": "stvm-model-v1", "arch", "num_classes", "head_dilations", "model": state_dict,
    **meta}``: the head's geometry is recorded in every checkpoint (older files without it have the
    paper's).

    ``meta`` holds provenance (protocol, init description, params, ...) and must be loadable with
    ``weights_only=True`` (tensors, containers and plain Python values only).
    """
    reserved = {"format", "arch", "num_classes", "head_dilations", "model"} & meta.keys()
    if reserved:
        raise ValueError(f"meta may not override {sorted(reserved)}")
    check_finite(model.state_dict(), path)
    obj = {
        "format": FORMAT,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "head_dilations": list(model.dilations),
        "model": model.state_dict(),
    }
    save_checkpoint(obj | meta, path)


def _check_protocol(obj: dict[str, Any], path: Path) -> None:
    """A recorded protocol must be 19, 16 or 13 (the class count is checked where it is used)."""
    from stvm.data.labels import PROTOCOL_CLASSES

    if "protocol" not in obj:
        return
    protocol = obj["protocol"]
    if isinstance(protocol, bool) or protocol not in PROTOCOL_CLASSES:
        raise StvmError(path, f"corrupt {FORMAT} checkpoint: protocol {str(protocol)[:40]} "
                              f"(expected one of {sorted(PROTOCOL_CLASSES)})")


def load_model_checkpoint(
    path: str | Path, expect_dilations: tuple[int, ...] | None = None
) -> tuple[SegModel, dict[str, Any]]:
    """Rebuild the model of an ``stvm-model-v1`` checkpoint; returns ``(model, meta)``.

    ``meta`` is everything but ``format`` and ``model`` (it includes ``arch``, ``num_classes`` and
    ``head_dilations``). With ``expect_dilations``, a checkpoint of another head geometry is refused:
    the weights would load (the shapes agree) and compute another function.
    """
    path = Path(path)
    obj = load_checkpoint(path)
    if obj.get("format") != FORMAT:
        hint = " (an external DeepLabV2 file? import it first)" if "format" not in obj else ""
        raise StvmError(
            path,
            f"not an stvm model checkpoint: format {obj.get('format')!r}, "
            f"expected {FORMAT!r}{hint}",
        )
    arch, num_classes = obj.get("arch"), obj.get("num_classes")
    if (
        not isinstance(arch, str)
        or arch not in ARCHS
        or isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or not 1 <= num_classes <= MAX_CLASSES
        or not isinstance(obj.get("model"), dict)
    ):
        raise StvmError(
            path, f"corrupt {FORMAT} checkpoint: arch {str(arch)[:40]!r}, num_classes {str(num_classes)[:40]} "
                  f"(expected one of {sorted(ARCHS)} and 1..{MAX_CLASSES} classes)"
        )
    _check_protocol(obj, path)
    dilations = _recorded_dilations(obj, arch, path)
    if expect_dilations is not None and tuple(expect_dilations) != dilations:
        raise StvmError(path, f"written with head dilations {list(dilations)}, but these params say "
                              f"{list(expect_dilations)} (train_source.head_dilations)")
    for part in ("teacher", "metric_head"):  # the checkpoint's other networks (stvm.evaluate.nets)
        if isinstance(obj.get(part), dict):
            check_loaded_finite(obj[part], path, f"{part} ")
    model = build_model(arch, num_classes, dilations)
    _load_checked(model, obj["model"], path, f"{arch} with {num_classes} classes")
    meta = {k: v for k, v in obj.items() if k not in ("format", "model")}
    return model, {**meta, "head_dilations": list(dilations)}


def _recorded_dilations(obj: dict[str, Any], arch: str, path: Path) -> tuple[int, ...]:
    """The checkpoint's head geometry; the paper's for files written before it was recorded."""
    if "head_dilations" not in obj:
        return paper_dilations(arch)
    value = obj["head_dilations"]
    try:
        return check_dilations(arch, tuple(value) if isinstance(value, (list, tuple)) else (value,))
    except StvmError as e:
        raise StvmError(path, f"corrupt {FORMAT} checkpoint: {e.problem}") from None
