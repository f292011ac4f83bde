"""``stvm import``: source models from elsewhere as stvm models, one importer per ``--source``.

Why one module: every way an outside file becomes a model (the external caffe DeepLabV2 layout,
torchvision's DeepLabV3, stvm files of other versions) and the command's choice among them and of
the protocol (``import_model``) sit together; the key/shape checking they share is
``weights._load_checked``.

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

External DeepLabV2-R101 import (``import_external_deeplabv2``)
--------------------------------------------------------------
Layout of AdaptSegNet (``model/deeplab.py``, ``model/deeplab_multi.py``) and ADVENT
(``advent/model/deeplabv2.py``), ``ResNetMulti``; our ``deeplabv2_r101`` is built in the same caffe
convention (see ``deeplab.py``), so the backbone maps one to one:

=====================================================  ==========================================
file key (after stripping ``module.`` / ``Scale.``)    stvm key
=====================================================  ==========================================
``conv1.weight``                                       ``backbone.conv1.weight``
``bn1.{weight,bias,running_mean,running_var}``         ``backbone.bn1.*``
``layer{1-4}.{b}.conv{1,2,3}.weight``                  ``backbone.layer{1-4}.{b}.conv{1,2,3}.*``
``layer{1-4}.{b}.bn{1,2,3}.*``                         ``backbone.layer{1-4}.{b}.bn{1,2,3}.*``
``layer{1-4}.0.downsample.{0,1}.*``                    ``backbone.layer{1-4}.0.downsample.{0,1}.*``
``layer5.conv2d_list.{i}.{weight,bias}`` (no layer6:   ``classifier.branches.{i}.{weight,bias}``
single-level AdaptSegNet, 2048 input channels)
``layer6.conv2d_list.{i}.{weight,bias}`` (ADVENT,      ``classifier.branches.{i}.{weight,bias}``
AdaptSegNet multi: main head on layer4)
``layer5.*`` when ``layer6`` exists (auxiliary head    dropped: neither repo uses it at test time
on layer3, 1024 input channels)
``*.num_batches_tracked`` (absent in old files)        same key, or 0 when absent
=====================================================  ==========================================

Two conventions of those repos are not in the keys and must be chosen by the caller:

* **ASPP branches.** AdaptSegNet's ``Classifier_Module.forward`` is ``out = conv0(x)`` followed by
  a loop whose body is ``out += conv[i+1](x); return out`` -- the ``return`` sits inside the loop,
  so it returns after the first iteration: only branches 0 and 1 (dilations 6 and 12) are summed,
  in training and at test time; branches 2 and 3 keep their random init. ADVENT's
  ``ClassifierModule`` returns after the loop and sums all four. Pass ``aspp_branches=2`` for an
  AdaptSegNet checkpoint, leave ``None`` (all four) for ADVENT. The weights cannot tell them apart.
* **Input convention.** Both repos feed BGR images in 0..255 minus the caffe mean
  (104.007, 116.669, 122.679) without std division; stvm feeds RGB in [0, 1] normalised with the
  ImageNet mean/std. With ``fold_caffe_input=True`` (default) that difference is folded into the
  weights: ``conv1.weight`` gets its input channels reversed and scaled by ``255 * std``, and the
  constant ``conv1(255 * mean - caffe_mean)`` is subtracted from ``bn1.running_mean``. This is exact
  away from the image border; in the 3-pixel zero-padded border, stvm's padding corresponds to a
  caffe input of ``255 * mean - caffe_mean`` (under one grey level per channel) instead of 0.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stvm.data.labels import PROTOCOL_CLASSES
from stvm.errors import StvmError
from stvm.models.deeplab import SegModel, build_model
from stvm.models.weights import FORMAT, _load_checked, _unwrap
from stvm.training import load_checkpoint

CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # AdaptSegNet / ADVENT IMG_MEAN
# (DeepLab version, ResNet depth, stem channels = ResNet base width) -> arch
_ARCH_BY_SPEC = {(2, 101, 64): "deeplabv2_r101", (3, 50, 64): "deeplabv3_r50", (2, 18, 64): "deeplabv2_r18",
                 (3, 18, 64): "deeplabv3_r18", (2, 18, 8): "deeplabv2_tiny"}
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
    stem = state.get("backbone.conv1.weight")
    width = int(stem.shape[0]) if isinstance(stem, Tensor) and stem.dim() == 4 else None
    arch = _ARCH_BY_SPEC.get((version, depth, width))
    last = state.get("classifier.branches.0.weight" if version == 2 else "classifier.4.weight")
    if arch is None or not isinstance(last, Tensor):
        raise StvmError(path, f"not an stvm DeepLab state dict (DeepLab v{version or '?'}, layer3 with "
                        f"{len(blocks)} blocks, stem width {width or '?'}, {len(state)} keys; expected one of {sorted(_ARCH_BY_SPEC.values())})")
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


def import_external_deeplabv2(
    path: str | Path,
    num_classes: int,
    *,
    aspp_branches: int | None = None,
    fold_caffe_input: bool = True,
) -> SegModel:
    """Load an AdaptSegNet/ADVENT DeepLabV2-R101 ``.pth`` as a ``deeplabv2_r101`` SegModel.

    See the module docstring for the key map and the two conventions: ``aspp_branches=2`` for
    AdaptSegNet checkpoints (its classifier sums only dilations 6 and 12), ``None`` for ADVENT;
    ``fold_caffe_input`` folds the BGR/0..255/caffe-mean input convention into ``conv1``/``bn1``
    (set False for a checkpoint trained on stvm's RGB ImageNet-normalised input).
    """
    path = Path(path)
    state = _unwrap(load_checkpoint(path), path, prefixes=("module.", "Scale."))
    if aspp_branches not in (None, 1, 2, 3, 4):
        raise StvmError(
            None, f"aspp_branches must be 1..4 or None (all four), got {aspp_branches!r}"
        )
    model = build_model("deeplabv2_r101", num_classes)
    model.classifier.aspp_branches = aspp_branches  # carried into the load by _extra_states
    what = (
        f"deeplabv2_r101 with {num_classes} classes (AdaptSegNet/ADVENT layout, keys after mapping)"
    )
    _load_checked(model, _map_external(state) | _extra_states(model), path, what)
    if fold_caffe_input:
        _fold_caffe_input(model)
    return model


def _map_external(state: dict[str, Any]) -> dict[str, Any]:
    """File keys -> stvm keys (table in the module docstring); unknown keys pass unchanged."""
    main = "layer6" if any(k.startswith("layer6.") for k in state) else "layer5"
    out = {}
    for key, value in state.items():
        if main == "layer6" and key.startswith("layer5."):
            continue  # auxiliary layer3 head of the multi-level model
        if key.startswith(f"{main}.conv2d_list."):
            out["classifier.branches." + key[len(f"{main}.conv2d_list.") :]] = value
        elif key.split(".", 1)[0] in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"):
            out["backbone." + key] = value
        else:
            out[key] = value
    return out


def _extra_states(model: torch.nn.Module) -> dict[str, Any]:
    """The model's own ``_extra_state`` entries (``aspp_branches``; external files have none)."""
    return {k: v for k, v in model.state_dict().items() if k.endswith("_extra_state")}


@torch.no_grad()
def _fold_caffe_input(model: SegModel) -> None:
    """Make a caffe-input network accept RGB ImageNet-normalised input (see module docstring).

    caffe input ``c = 255 * x01[::-1] - caffe_mean`` and ``x01 = x * std + mean``, so
    ``conv1(c) = conv1'(x) + conv1(255 * mean - caffe_mean)`` with ``conv1'`` the RGB-ordered weight
    scaled by ``255 * std``; the constant is absorbed by bn1's running mean.
    """
    from stvm.data.images import IMAGENET_MEAN, IMAGENET_STD

    conv, bn = model.backbone.conv1, model.backbone.bn1
    w_rgb = conv.weight.flip(1)  # BGR input channels -> RGB
    offset_rgb = 255.0 * IMAGENET_MEAN - torch.tensor(CAFFE_MEAN_BGR).flip(0)
    bn.running_mean -= (w_rgb * offset_rgb.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    conv.weight.copy_(w_rgb * (255.0 * IMAGENET_STD).view(1, 3, 1, 1))


def import_model(source: str, path: Path, protocol: int | None, default_protocol: int, *,
                 replace_head: bool = False, aspp_branches: int | None = None) -> tuple[SegModel, dict[str, Any]]:
    """``stvm import``: the model in ``path`` read as ``source`` (``stvm``, ``torchvision-deeplabv3``
    or the external DeepLabV2 layout) and the meta its checkpoint records. The protocol is
    ``protocol`` when given; else, for an stvm file, the one it records or the one its class count
    fits; else ``default_protocol``. An stvm file whose classes do not fit it is an error."""
    meta = {"protocol": protocol or default_protocol, "stage": "import", "init": f"imported from {path} ({source})"}
    if source == "stvm":
        model, old = import_stvm(path)
        by_count = {len(v): k for k, v in PROTOCOL_CLASSES.items()}
        chosen = protocol or old.get("protocol") or by_count.get(model.num_classes)
        if chosen not in PROTOCOL_CLASSES or len(PROTOCOL_CLASSES[chosen]) != model.num_classes:
            raise StvmError(path, f"{model.num_classes} classes do not fit protocol {chosen}")
        return model, {**old, **meta, "protocol": chosen}
    classes = len(PROTOCOL_CLASSES[meta["protocol"]])
    if source == "torchvision-deeplabv3":
        return import_torchvision_deeplabv3(path, classes, replace_head=replace_head), meta
    return import_external_deeplabv2(path, classes, aspp_branches=aspp_branches), meta
