"""More source models for ``stvm import``: torchvision's DeepLabV3-ResNet50 and stvm's own files.

* **torchvision ``deeplabv3_resnet50``** state dicts (``torchvision.models.segmentation``): the keys
  are ours already (``backbone.*``, ``classifier.{0,1,2,4}.*``; the auxiliary FCN head
  ``aux_classifier.*`` is dropped), and the input convention is the same (RGB, ImageNet mean/std).
  Its published heads predict 21 COCO/VOC classes, not Cityscapes': such a file fails with the
  shape mismatch named unless ``replace_head`` is set, which swaps ``classifier.4`` for a fresh
  randomly initialised layer of the protocol's class count and warns (that model must be trained on
  labelled source data before adapting).
* **stvm files of other versions**: a model checkpoint (``stvm-model-v1``) written before a key
  existed (``classifier._extra_state``, ``num_batches_tracked``: filled with the defaults they had
  then), a ``train_source`` resume checkpoint (``{"model": ..., "optimizer": ...}``) or an ``adapt``
  one (``{"nets": {"student": ..., "teacher": ...}}``, the student is taken). The architecture and
  class count are read from the keys and shapes. Anything else that does not fit lists the missing
  and unexpected keys and the shape mismatches (``weights.check_state``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor

from stvm.errors import StvmError
from stvm.models.deeplab import SegModel, build_model
from stvm.models.weights import FORMAT, _load_checked, _unwrap
from stvm.training import load_checkpoint

_ARCH_BY_SPEC = {(2, 101): "deeplabv2_r101", (3, 50): "deeplabv3_r50", (2, 18): "deeplabv2_r18",
                 (3, 18): "deeplabv3_r18"}
_DEPTH_BY_LAYER3 = {23: 101, 6: 50, 2: 18}  # residual blocks in layer3
TORCHVISION_HEAD = ("classifier.4.weight", "classifier.4.bias")


def import_torchvision_deeplabv3(path: str | Path, num_classes: int, *, replace_head: bool = False) -> SegModel:
    """A torchvision ``deeplabv3_resnet50`` state dict as a ``deeplabv3_r50`` SegModel (see module doc)."""
    path = Path(path)
    state = {k: v for k, v in _unwrap(load_checkpoint(path), path).items() if not k.startswith("aux_classifier.")}
    model = build_model("deeplabv3_r50", num_classes)
    head = {k: state.get(k) for k in TORCHVISION_HEAD}
    fits = all(isinstance(v, Tensor) and v.shape[0] == num_classes for v in head.values())
    if replace_head and not fits:
        shown = head["classifier.4.weight"]
        old = shown.shape[0] if isinstance(shown, Tensor) else "no"
        warnings.warn(f"{path}: the {old}-class head classifier.4 is replaced by a fresh random {num_classes}-class "
                      "layer; train it on labelled source data (train_source) before adapting", UserWarning,
                      stacklevel=2)
        state = {k: v for k, v in state.items() if k not in TORCHVISION_HEAD}
        state |= {k: model.state_dict()[k] for k in TORCHVISION_HEAD}
    try:
        _load_checked(model, state, path, f"torchvision deeplabv3_resnet50 with {num_classes} classes")
    except StvmError as err:
        hint = "" if fits else " (a COCO/VOC head? pass --replace-head for a fresh one)"
        raise StvmError(path, err.problem + hint) from None
    return model


def _model_state(obj: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, meta) of an stvm model, train_source or adapt checkpoint of any version."""
    if obj.get("format") == FORMAT or isinstance(obj.get("format"), str) and "model" in obj:
        meta = {k: v for k, v in obj.items() if k not in ("format", "model", "arch", "num_classes")}
        return obj["model"], meta
    nets = obj.get("nets")
    if isinstance(nets, dict) and isinstance(nets.get("student"), dict):
        return nets["student"], {}
    if isinstance(obj.get("model"), dict) and "optimizer" in obj:
        return obj["model"], {}
    return _unwrap(obj, path), {}


def infer_arch(state: dict[str, Any], path: Path) -> tuple[str, int]:
    """(arch, num_classes) of an stvm-layout state dict, read from its keys and shapes."""
    version = 2 if any(k.startswith("classifier.branches.") for k in state) else (
        3 if any(k.startswith("classifier.0.convs.") for k in state) else None)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    depth = _DEPTH_BY_LAYER3.get(max(blocks) + 1 if blocks else 0)
    arch = _ARCH_BY_SPEC.get((version, depth))
    last = state.get("classifier.branches.0.weight" if version == 2 else "classifier.4.weight")
    if arch is None or not isinstance(last, Tensor):
        raise StvmError(path, f"not an stvm DeepLab state dict (DeepLab v{version or '?'}, layer3 with "
                        f"{len(blocks)} blocks, {len(state)} keys; expected one of {sorted(_ARCH_BY_SPEC.values())})")
    return arch, int(last.shape[0])


def import_stvm(path: str | Path) -> tuple[SegModel, dict[str, Any]]:
    """An stvm model from a checkpoint of this or another stvm version; returns ``(model, meta)``."""
    path = Path(path)
    state, meta = _model_state(load_checkpoint(path), path)
    arch, num_classes = infer_arch(state, path)
    model = build_model(arch, num_classes)
    filled = sorted(k for k in model.state_dict().keys() - state.keys() if k.endswith("_extra_state"))
    state = dict(state) | {k: model.state_dict()[k] for k in filled}  # older files: the default then
    _load_checked(model, state, path, f"{arch} with {num_classes} classes")
    if filled:
        meta["import_filled_defaults"] = filled
    return model, meta
