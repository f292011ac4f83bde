"""Where a model's weights come from: backbone init, external DeepLabV2 import, our checkpoints.

Every loader checks keys and shapes itself and fails with one ``StvmError`` that lists missing keys,
unexpected keys and shape mismatches (never a ``load_state_dict`` traceback). Files are read with
``torch.load(weights_only=True)`` only (``stvm.training.load_checkpoint``); a file that needs arbitrary
unpickling is refused. Common wrappers are unwrapped: ``{'state_dict': ...}`` / ``{'model': ...}``
and the ``module.`` prefix of ``DataParallel``.

Why one file over 300 lines: every way weights enter a model (ImageNet init, the external caffe
DeepLabV2 layout, our own checkpoints) shares the same key/shape checking and error reporting.

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

import http.client
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stvm.digest import file_sha256
from stvm.errors import StvmError
from stvm.models.deeplab import ARCHS, SegModel, build_model, check_dilations, paper_dilations
from stvm.training import check_finite, load_checkpoint, save_checkpoint

FORMAT = "stvm-model-v1"
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # AdaptSegNet / ADVENT IMG_MEAN
_IMAGENET_ENUMS = {101: "ResNet101_Weights", 50: "ResNet50_Weights", 18: "ResNet18_Weights"}
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
