"""DeepLabV2 / DeepLabV3 segmentation networks split into feature extractor F and classifier C.

STvM (paper III, IV-B) needs the split: the metric network M reads F's features and has C's
architecture (``build_head(arch, in_channels, N_f)``), and F and C train with different learning
rates (``SegModel.param_groups``). Logits are bilinearly upsampled to the input size, as in
torchvision's ``_SimpleSegmentationModel``.

Architectures (all output stride 8):

==============  =============================================  ============================  =====
arch            F (backbone)                                   C (classifier)                F ch.
==============  =============================================  ============================  =====
deeplabv2_r101  ResNet-101, DeepLabV2 caffe convention         ASPP-v2: sum of four 3x3      2048
                                                               convs, dilation 6/12/18/24
deeplabv3_r50   torchvision ResNet-50,                         torchvision ``DeepLabHead``   2048
                ``replace_stride_with_dilation=[F, T, T]``     (ASPP 12/24/36 + pooling)
deeplabv2_r18   ResNet-18, caffe convention as deeplabv2_r101  ASPP-v2 (as above)            512
deeplabv3_r18   ResNet-18, torchvision stem, layer3/4 dilated  ``DeepLabHead(512, C)``       512
deeplabv2_tiny  deeplabv2_r18 at 1/8 width (8/16/32/64 ch.),   ASPP-v2 (as above)            64
                for tests and smoke runs: no pretrained
                weights, its numbers mean nothing
==============  =============================================  ============================  =====

Decision: DeepLabV2 backbones are built in the DeepLabV2 *caffe* convention of the public DA
repos (AdaptSegNet ``model/deeplab*.py``, ADVENT ``advent/model/deeplabv2.py``, ``ResNetMulti``),
so that a DeepLabV2-R101 source model imported from those repos
(``importers.import_external_deeplabv2``) computes here what it computed at home:

* the stride of layer2's first bottleneck sits on its 1x1 ``conv1`` (torchvision's ResNet v1.5
  puts it on the 3x3 ``conv2``);
* the stem max-pool uses ``ceil_mode=True``, so an input side ``H`` gives a feature side
  ``ceil((ceil((ceil(H/2) - 1) / 2) + 1) / 2)``, e.g. 17 for 128 and 65 for 512 (DeepLab's
  classic 65x129 for 512x1024), instead of torchvision's ``ceil(H/8)``; code downstream must read
  sizes from tensors, never assume ``H // 8``;
* every 3x3 conv of layer3 uses dilation 2 and every one of layer4 dilation 4, the first block
  included (torchvision keeps the first block of a dilated layer at the previous dilation).

Parameter names and shapes are those of torchvision's ResNet either way, so torchvision ImageNet
weights load into the caffe-style net (fine as an initialisation; the stride placement differs).
Caffe's frozen-affine BatchNorm is a training detail and is not reproduced. ``deeplabv2_r18``
mirrors its big sibling (ceil-mode stem, all blocks of layer3/4 dilated) so the CPU demo exercises
the same shape path; ``deeplabv3_r18`` uses the torchvision stem. ResNet-18's BasicBlocks cannot
use torchvision's ``replace_stride_with_dilation``, so ``_dilate_layer`` rewrites the convs. The
ResNet-18 variants keep full width (no channel reduction): torchvision's ImageNet ResNet-18 weights then
still load, and one SGD step (batch 2, 128x128) already takes only about 0.25-0.35 s on 2 CPU cores.

``deeplabv2_tiny`` (after timm's small ``test_*`` models in its real registry): ``deeplabv2_r18`` with
every channel count / 8, 1/52 of the weights (0.22 M vs 11.5 M), so tests whose subject is not the
network write about 1 MB, not 45 MB, per network. ``train_source.init: imagenet`` is refused for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stvm.compat import torchvision
from stvm.errors import StvmError

resnet = torchvision.models.resnet
DeepLabHead = torchvision.models.segmentation.deeplabv3.DeepLabHead

ARCHS = ("deeplabv2_r101", "deeplabv3_r50", "deeplabv2_r18", "deeplabv3_r18", "deeplabv2_tiny")
ASPP_V2_DILATIONS = (6, 12, 18, 24)
ASPP_V3_DILATIONS = (12, 24, 36)  # torchvision DeepLabHead's atrous rates
# the paper's geometry: 512-pixel crops give 65x65 stride-8 maps, so every tap sees features
PAPER_MAP_SIDE = 65
# arch -> (torchvision ResNet depth, DeepLab version, F channels, ResNet base width: torchvision's 64)
_SPECS: dict[str, tuple[int, int, int, int]] = {
    "deeplabv2_r101": (101, 2, 2048, 64),
    "deeplabv3_r50": (50, 3, 2048, 64),
    "deeplabv2_r18": (18, 2, 512, 64),
    "deeplabv3_r18": (18, 3, 512, 64),
    "deeplabv2_tiny": (18, 2, 64, 8),
}
NO_PRETRAINED = frozenset({"deeplabv2_tiny"})  # archs without ImageNet weights: for tests and smoke runs


class ResNetBackbone(nn.Module):
    """Stem and layer1..4 of a torchvision ResNet; keys as torchvision's, minus ``fc``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPPv2(nn.Module):
    """DeepLabV2 classifier: the SUM of four parallel 3x3 convs with dilation 6/12/18/24.

    ``dilations`` (one per branch; the paper's 6/12/18/24 by default) is the head geometry a small
    benchmark scales with its feature-map size (``scaled_dilations``); checkpoints record it
    (``weights.save_model_checkpoint``). ``aspp_branches`` (1..4) sums only the first n branches. AdaptSegNet's ``Classifier_Module``
    returns inside its loop, so its checkpoints only ever used branches 0 and 1 (dilations 6 and
    12): import those with ``aspp_branches=2``. ADVENT sums all four (the default). The value is
    kept in the module's ``state_dict`` (``_extra_state``, a 0-d int64 tensor; not a buffer, so
    the EMA update and ``.to(device)`` leave it alone), so it survives checkpoints and copies.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        aspp_branches: int | None = None,
        dilations: tuple[int, ...] = ASPP_V2_DILATIONS,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=True)
            for d in dilations
        )
        for conv in self.branches:  # DeepLab's init for the classifier: N(0, 0.01), zero bias
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        self.aspp_branches = aspp_branches

    @property
    def aspp_branches(self) -> int:
        """How many of the four branches are summed."""
        return self._n

    @aspp_branches.setter
    def aspp_branches(self, n: int | None) -> None:
        n = len(self.branches) if n is None else n
        if not isinstance(n, int) or not 1 <= n <= len(self.branches):
            raise ValueError(
                f"aspp_branches must be an int in 1..{len(self.branches)} or None, got {n!r}"
            )
        self._n = n

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1 : self._n]:
            out = out + conv(x)
        return out

    def get_extra_state(self) -> Tensor:
        # a tensor (not a dict) so every state_dict value stays a tensor (clone/equal/to just work)
        return torch.tensor(self._n)

    def set_extra_state(self, state: Tensor) -> None:
        self.aspp_branches = int(state)


class SegModel(nn.Module):
    """Segmentation network ``C(F(x))`` with logits upsampled to the input size."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        backbone: nn.Module,
        classifier: nn.Module,
        feature_channels: int,
        dilations: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.arch, self.num_classes, self.feature_channels = arch, num_classes, feature_channels
        self.dilations = paper_dilations(arch) if dilations is None else tuple(dilations)
        self.backbone = backbone
        self.classifier = classifier

    def features(self, x: Tensor) -> Tensor:
        """F(x): stride-8 feature map ``(B, feature_channels, h, w)``."""
        return self.backbone(x)

    def classify(self, f: Tensor) -> Tensor:
        """C(f): low-resolution logits ``(B, num_classes, h, w)``."""
        return self.classifier(f)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits at ``x``'s size (bilinear, ``align_corners=False``); optionally also F(x)."""
        f = self.features(x)
        logits = F.interpolate(
            self.classify(f), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return (logits, f) if return_features else logits

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(F parameters, C parameters), for separate learning rates."""
        return list(self.backbone.parameters()), list(self.classifier.parameters())


def _dilate_layer(layer: nn.Module, dilation: int) -> None:
    """Turn a stride-2 ResNet stage into a stride-1 stage with dilated 3x3 convs (every block)."""
    for m in layer.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = m.padding = (dilation, dilation)


def _caffe_stem_and_stride(net: nn.Module) -> None:
    """DeepLabV2 caffe convention: ceil-mode max-pool; layer2's stride on the first 1x1 conv."""
    net.maxpool.ceil_mode = True
    first = net.layer2[0]
    if isinstance(first, resnet.Bottleneck):
        first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)


def _narrow_resnet18(base: int) -> nn.Module:
    """torchvision's ResNet-18 (names, strides, init; no ``fc``) with ``base`` stem channels instead of 64:
    torchvision's ``ResNet`` fixes 64 (``width_per_group`` is for Bottlenecks only)."""
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1, net.relu, net.maxpool = nn.BatchNorm2d(base), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    for i, (cin, cout, stride) in enumerate(((base, base, 1), (base, 2 * base, 2), (2 * base, 4 * base, 2),
                                             (4 * base, 8 * base, 2)), start=1):
        down = None if stride == 1 else nn.Sequential(resnet.conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        net.add_module(f"layer{i}", nn.Sequential(resnet.BasicBlock(cin, cout, stride, down),
                                                  resnet.BasicBlock(cout, cout)))
    for m in net.modules():  # torchvision ResNet's init
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


def _backbone(depth: int, version: int, width: int = 64) -> ResNetBackbone:
    if depth == 50:  # torchvision's own DeepLabV3 backbone
        return ResNetBackbone(
            resnet.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        )
    net: nn.Module = resnet.resnet101(weights=None) if depth == 101 else (
        resnet.resnet18(weights=None) if width == 64 else _narrow_resnet18(width))
    _dilate_layer(net.layer3, 2)
    _dilate_layer(net.layer4, 4)
    if version == 2:
        _caffe_stem_and_stride(net)
    return ResNetBackbone(net)


def paper_dilations(arch: str) -> tuple[int, ...]:
    """The head dilations of ``arch`` as published: DeepLabV2 6/12/18/24, DeepLabV3 12/24/36."""
    return ASPP_V2_DILATIONS if _spec(arch)[1] == 2 else ASPP_V3_DILATIONS


def feature_side(arch: str, side: int) -> int:
    """The stride-8 feature-map side of an input side (the DeepLabV2 caffe stem rounds up: 64 -> 9,
    512 -> 65; torchvision's stem gives ceil(side / 8))."""
    if _spec(arch)[1] == 3:
        return -(-side // 8)
    half = -(-side // 2)
    return -(-(-(-(half - 1) // 2) + 1) // 2)


def scaled_dilations(arch: str, map_side: int) -> tuple[int, ...]:
    """The paper's dilations scaled to a stride-8 map side at the paper's ratio (d / 65), at least 1.

    At 65 (512-pixel crops) this is the paper's geometry; on a 9-row map (64-pixel frames) the
    paper's 12/18/24 taps would only ever read zero padding, which this keeps from happening.
    """
    if map_side < 1:
        raise StvmError(None, f"feature-map side must be >= 1, got {map_side}")
    return tuple(max(1, round(d * map_side / PAPER_MAP_SIDE)) for d in paper_dilations(arch))


def check_dilations(arch: str, dilations: tuple[int, ...]) -> tuple[int, ...]:
    """``dilations`` as a tuple if it fits ``arch``'s head (one positive int per branch), else StvmError."""
    n = len(paper_dilations(arch))
    ok = len(dilations) == n and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilations)
    if not ok:
        raise StvmError(None, f"{arch}: head dilations must be {n} integers >= 1, got {list(dilations)!r}")
    return tuple(dilations)


def build_head(
    arch: str, in_channels: int, out_channels: int, dilations: tuple[int, ...] | None = None
) -> nn.Module:
    """A classifier with the architecture of ``arch``'s C (M reuses it, ``out_channels=N_f``);
    ``dilations`` None = the paper's (``paper_dilations``)."""
    dil = paper_dilations(arch) if dilations is None else check_dilations(arch, tuple(dilations))
    if _spec(arch)[1] == 2:
        return ASPPv2(in_channels, out_channels, dilations=dil)
    return DeepLabHead(in_channels, out_channels, atrous_rates=dil)


def build_model(arch: str, num_classes: int, dilations: tuple[int, ...] | None = None) -> SegModel:
    """A randomly initialised model (no pretrained weights, no warning); load weights afterwards.

    ``dilations`` is the classifier's geometry (None = the paper's; see ``scaled_dilations``)."""
    depth, version, channels, width = _spec(arch)
    if num_classes < 1:
        raise StvmError(None, f"num_classes must be >= 1, got {num_classes}")
    head = build_head(arch, channels, num_classes, dilations)
    return SegModel(arch, num_classes, _backbone(depth, version, width), head, channels, dilations)


def _spec(arch: str) -> tuple[int, int, int, int]:
    if arch not in _SPECS:
        raise StvmError(None, f"unknown arch {arch!r} (choose one of {', '.join(ARCHS)})")
    return _SPECS[arch]
