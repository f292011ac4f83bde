"""DeepLab models (F/C split, shapes, gradients, ASPP-v2) and their weights (init, import, save)."""

from __future__ import annotations

import copy
import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F

from stvm.compat import torchvision
from stvm.errors import StvmError
from stvm.models.deeplab import ARCHS, ASPPv2, build_head, build_model, paper_dilations
from stvm.models.importers import CAFFE_MEAN_BGR, import_external_deeplabv2
from stvm.models.weights import init_backbone, load_model_checkpoint, save_model_checkpoint

SMALL = ("deeplabv2_r18", "deeplabv3_r18", "deeplabv2_tiny")
CHANNELS = {
    "deeplabv2_r101": 2048,
    "deeplabv3_r50": 2048,
    "deeplabv2_r18": 512,
    "deeplabv3_r18": 512,
    "deeplabv2_tiny": 64,
}


def caffe_side(n: int) -> int:
    """Feature side in the DeepLabV2 caffe convention: conv s2 p3, ceil-mode pool s2 p1, s2."""
    a = math.ceil(n / 2)
    b = math.ceil((a - 1) / 2) + 1
    return math.ceil(b / 2)


def feature_side(arch: str, n: int) -> int:
    return caffe_side(n) if arch.startswith("deeplabv2") else math.ceil(n / 8)


def randomize_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode comparisons exercise the buffers too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


# --- shapes, F/C split, gradients -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_split(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5).eval()
    # even sides, where the caffe ceil-mode stem and torchvision's differ (32 -> 5 vs 4 features)
    h, w = (40, 48) if arch in SMALL else (32, 40)  # big archs: one tiny forward (CPU time)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        logits, feats = model(x, return_features=True)
        low = model.classify(feats)
        if arch in SMALL:
            assert torch.equal(model.features(x), feats) and torch.equal(model(x), logits)
    assert (
        model.feature_channels == CHANNELS[arch] and model.num_classes == 5 and model.arch == arch
    )
    assert feats.shape == (1, CHANNELS[arch], feature_side(arch, h), feature_side(arch, w))
    assert low.shape == (1, 5, *feats.shape[-2:])
    assert logits.shape == (1, 5, h, w)
    assert torch.allclose(
        logits, F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_param_groups_partition_all_parameters(arch):
    model = build_model(arch, 3)
    f_params, c_params = model.param_groups()
    f_ids, c_ids = {id(p) for p in f_params}, {id(p) for p in c_params}
    assert len(f_ids) == len(f_params) and len(c_ids) == len(c_params)
    assert not f_ids & c_ids
    assert f_ids | c_ids == {id(p) for p in model.parameters()}
    assert c_ids == {id(p) for p in model.classifier.parameters()} and c_params


@pytest.mark.parametrize("arch", SMALL)
def test_every_parameter_gets_a_gradient_with_batch_2(arch):
    torch.manual_seed(1)
    model = build_model(arch, 4).train()  # batch 2 in train mode: DeepLabHead's pooled BN must cope
    x, y = torch.randn(2, 3, 48, 40), torch.randint(0, 4, (2, 48, 40))
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert all(p.grad.abs().sum() > 0 for p in model.classifier.parameters())


@pytest.mark.parametrize(
    "arch, cls", [("deeplabv2_r18", ASPPv2), ("deeplabv3_r50", torch.nn.Sequential)]
)
def test_build_head_output_channels(arch, cls):
    head = build_head(arch, 32, 128).train()
    assert isinstance(head, cls)
    out = head(torch.randn(2, 32, 9, 11))
    assert out.shape == (2, 128, 9, 11)
    assert isinstance(build_model(arch, 3).classifier, cls)


def test_deeplabv2_uses_the_caffe_convention_and_v3_torchvisions(r101_source):
    """Values read from AdaptSegNet/ADVENT ``ResNetMulti`` (and torchvision's resnet50 for V3)."""
    v2 = r101_source[0].backbone
    assert v2.maxpool.ceil_mode
    assert v2.layer2[0].conv1.stride == (2, 2) and v2.layer2[0].conv2.stride == (1, 1)
    for layer, d in ((v2.layer3, 2), (v2.layer4, 4)):
        for block in layer:
            assert (
                block.conv2.dilation == (d, d)
                and block.conv2.padding == (d, d)
                and block.conv2.stride == (1, 1)
            )
        assert layer[0].downsample[0].stride == (1, 1)
    v3 = build_model("deeplabv3_r50", 2).backbone
    assert not v3.maxpool.ceil_mode and v3.layer2[0].conv2.stride == (2, 2)
    assert v3.layer3[0].conv2.dilation == (1, 1) and v3.layer3[1].conv2.dilation == (2, 2)
    assert v3.layer4[0].conv2.dilation == (2, 2) and v3.layer4[1].conv2.dilation == (4, 4)


def test_deeplabv2_tiny_is_deeplabv2_r18_at_one_eighth_width():
    """The same module names, strides, dilations, paddings and head; every channel count / 8 (the image's 3
    input channels and the class count excepted)."""
    tiny, r18 = build_model("deeplabv2_tiny", 19), build_model("deeplabv2_r18", 19)
    ts, rs = tiny.state_dict(), r18.state_dict()
    assert ts.keys() == rs.keys()
    for k, t in ts.items():
        r = rs[k]
        if t.dim() == 0:  # num_batches_tracked, the head's _extra_state
            assert torch.equal(t, r), k
            continue
        kept = {0} if k.startswith("classifier.") else {1} if k == "backbone.conv1.weight" else set()
        want = [n if i in kept or i >= 2 else n // 8 for i, n in enumerate(r.shape)]  # (out, in, kh, kw)
        assert list(t.shape) == want, (k, t.shape, r.shape)
    convs = {n: m for n, m in r18.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d))}
    for name, m in tiny.named_modules():
        if name in convs:
            other = convs.pop(name)
            for attr in ("kernel_size", "stride", "padding", "dilation", "ceil_mode"):
                assert getattr(m, attr, None) == getattr(other, attr, None), (name, attr)
    assert not convs
    assert tiny.feature_channels == 64 and tiny.dilations == r18.dilations == (6, 12, 18, 24)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert tiny.eval().features(x).shape[-2:] == r18.eval().features(x).shape[-2:]
    assert sum(p.numel() for p in tiny.parameters()) * 50 < sum(p.numel() for p in r18.parameters())


def test_deeplabv2_tiny_has_no_imagenet_weights(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)  # the refusal comes first: nothing is looked up
    with pytest.raises(StvmError, match=r"deeplabv2_tiny has no ImageNet weights .*'random'") as err:
        init_backbone(build_model("deeplabv2_tiny", 4), "imagenet")
    assert len(str(err.value).splitlines()) == 1


# --- ASPP-v2 --------------------------------------------------------------------------------------


def _branch(head: ASPPv2, i: int, x: torch.Tensor) -> torch.Tensor:
    d = (6, 12, 18, 24)[i]
    return F.conv2d(x, head.branches[i].weight, head.branches[i].bias, padding=d, dilation=d)


def test_aspp_v2_is_the_sum_of_four_dilated_branches():
    torch.manual_seed(2)
    head = ASPPv2(6, 3)
    x = torch.randn(2, 6, 30, 30)
    with torch.no_grad():
        total = head(x)
        assert torch.allclose(total, sum(_branch(head, i, x) for i in range(4)), atol=1e-5)
        for keep in range(4):  # zero all but one branch: the output is that branch alone
            single = copy.deepcopy(head)
            for i, conv in enumerate(single.branches):
                if i != keep:
                    conv.weight.zero_()
                    conv.bias.zero_()
            assert torch.allclose(single(x), _branch(head, keep, x), atol=1e-6)
            assert not torch.allclose(single(x), total, atol=1e-3)


def test_aspp_branches_limits_the_sum_and_survives_state_dict_and_copies():
    torch.manual_seed(3)
    head = ASPPv2(4, 2, aspp_branches=2)
    x = torch.randn(1, 4, 20, 20)
    with torch.no_grad():
        assert torch.allclose(head(x), _branch(head, 0, x) + _branch(head, 1, x), atol=1e-6)
        one = copy.deepcopy(head)
        one.aspp_branches = 1
        assert torch.allclose(one(x), _branch(head, 0, x), atol=1e-6)
        fresh = ASPPv2(4, 2)
        assert fresh.aspp_branches == 4
        fresh.load_state_dict(head.state_dict())
        assert fresh.aspp_branches == 2 and torch.equal(fresh(x), head(x))
    assert copy.deepcopy(head).aspp_branches == 2
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError):
            ASPPv2(4, 2, aspp_branches=bad)


# --- external DeepLabV2 import --------------------------------------------------------------------


def to_external_layout(state: dict, layout: str, num_classes: int) -> dict:
    """Our state dict in a public DA repo's layout (written independently of ``_map_external``).

    ``advent``: ``module.``-prefixed DataParallel keys, main head ``layer6`` plus an auxiliary
    ``layer5`` on layer3 (1024 channels), wrapped in ``{'state_dict': ...}``.
    ``adaptsegnet``: bare keys, single head ``layer5``, wrapped in ``{'model': ...}``.
    Both without ``num_batches_tracked`` (old PyTorch).
    """
    head = "layer6" if layout == "advent" else "layer5"
    prefix = "module." if layout == "advent" else ""
    out = {}
    for key, value in state.items():
        if key.endswith(("num_batches_tracked", "_extra_state")):
            continue
        top, rest = key.split(".", 1)
        if top == "backbone":
            out[prefix + rest] = value.clone()
        else:  # classifier.branches.{i}.{weight,bias}
            _, i, param = rest.split(".")
            out[f"{prefix}{head}.conv2d_list.{i}.{param}"] = value.clone()
    if layout == "advent":
        g = torch.Generator().manual_seed(9)
        for i in range(4):
            out[f"module.layer5.conv2d_list.{i}.weight"] = torch.randn(
                num_classes, 1024, 3, 3, generator=g
            )
            out[f"module.layer5.conv2d_list.{i}.bias"] = torch.randn(num_classes, generator=g)
        return {"state_dict": out, "iteration": 120000}
    return {"model": out}


@pytest.fixture(scope="module")
def r101_source(tmp_path_factory):
    """A random deeplabv2_r101 (3 classes, non-trivial BN stats), an input, and the model saved in
    AdaptSegNet's layout (saved once: the file is 170 MB)."""
    torch.manual_seed(4)
    model = build_model("deeplabv2_r101", 3).eval()
    randomize_bn(model, 5)
    path = tmp_path_factory.mktemp("ext") / "adaptsegnet.pth"
    torch.save(to_external_layout(model.state_dict(), "adaptsegnet", 3), path)
    return model, torch.randn(1, 3, 32, 40), path


@pytest.mark.parametrize("layout, branches", [("advent", None), ("adaptsegnet", 2)])
def test_external_import_round_trip(tmp_path, r101_source, layout, branches):
    source, x, path = r101_source
    if layout == "advent":
        path = tmp_path / "advent.pth"
        torch.save(to_external_layout(source.state_dict(), layout, 3), path)
    imported = import_external_deeplabv2(
        path, 3, aspp_branches=branches, fold_caffe_input=False
    ).eval()
    assert imported.arch == "deeplabv2_r101" and imported.classifier.aspp_branches == (
        branches or 4
    )
    home = copy.deepcopy(source)
    home.classifier.aspp_branches = branches
    with torch.no_grad():
        logits, feats = imported(x, return_features=True)
        assert torch.equal(logits, home(x))
        if branches == 2:  # the quirk matters: all four branches give a different answer
            assert not torch.allclose(imported.classify(feats), source.classify(feats), atol=1e-4)


def test_external_import_mismatches_are_listed(tmp_path, r101_source):
    state = to_external_layout(r101_source[0].state_dict(), "adaptsegnet", 3)["model"]
    del state["layer3.5.conv2.weight"]
    state["layer7.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(StvmError) as err:
        import_external_deeplabv2(path, 19)  # the file has 3 classes
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert (
        "1 missing keys: backbone.layer3.5.conv2.weight" in msg
        and "1 unexpected keys: layer7.extra" in msg
    )
    assert "classifier.branches.0.weight file (3, 2048, 3, 3) vs model (19, 2048, 3, 3)" in msg
    assert "8 shape mismatches" in msg  # 4 branches x (weight, bias)


def test_external_import_refuses_our_own_format(tmp_path):
    model = build_model("deeplabv2_r18", 2)
    save_model_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(StvmError, match="already an stvm model checkpoint"):
        import_external_deeplabv2(tmp_path / "m.pt", 2)


def test_caffe_input_convention_is_folded_into_conv1_and_bn1(r101_source):
    home, _, path = r101_source  # importing without the fold reproduces ``home`` (round-trip test)
    ours = import_external_deeplabv2(path, 3).eval()
    g = torch.Generator().manual_seed(6)
    x01 = torch.rand(1, 3, 40, 40, generator=g)  # RGB in [0, 1]
    caffe = 255.0 * x01.flip(1) - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normalised = (x01 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        a = home.backbone.bn1(home.backbone.conv1(caffe))
        b = ours.backbone.bn1(ours.backbone.conv1(normalised))
        unfolded = home.backbone.bn1(home.backbone.conv1(normalised))
    inner = (
        slice(None),
        slice(None),
        slice(2, 18),
        slice(2, 18),
    )  # outputs whose 7x7 window avoids padding
    assert torch.allclose(a[inner], b[inner], rtol=1e-4, atol=1e-3 * a.abs().max().item())
    assert (a - b).abs().max() < 0.05 * a.abs().max()  # the border differs, but only slightly
    assert not torch.allclose(a, unfolded, atol=1.0)  # without the fold the input is wrong


# --- backbone init --------------------------------------------------------------------------------


def _torchvision_resnet18_file(path, seed: int = 7):
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_init_backbone_from_a_local_torchvision_file(tmp_path):
    state = _torchvision_resnet18_file(tmp_path / "r18.pth")
    model = build_model("deeplabv3_r18", 4)
    desc = init_backbone(model, str(tmp_path / "r18.pth"))
    assert "r18.pth" in desc and "sha256" in desc
    ours = model.backbone.state_dict()
    assert set(ours) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(ours[k], state[k]) for k in ours)


def test_init_backbone_bad_files_fail_clearly(tmp_path):
    model = build_model("deeplabv2_r18", 4)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(StvmError, match=r"unexpected keys: layer1\.2\.bn1\.bias") as err:
        init_backbone(model, str(tmp_path / "r34.pth"))
    assert "(+" in str(err.value) and "more)" in str(err.value)  # long lists are cut short
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(
        StvmError,
        match=r"shape mismatches: .*conv1\.weight file \(64, 64, 1, 1\) vs model \(64, 64, 3, 3\)",
    ):
        init_backbone(model, str(tmp_path / "r50.pth"))
    odd = dict(model.backbone.state_dict()) | {"conv1.weight": 3}
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(StvmError, match=r"conv1\.weight file int vs model \(64, 3, 7, 7\)"):
        init_backbone(model, str(tmp_path / "odd.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(StvmError, match="junk.pth: cannot load"):
        init_backbone(model, str(tmp_path / "junk.pth"))
    with pytest.raises(StvmError, match="not found"):
        init_backbone(model, str(tmp_path / "missing.pth"))


def _offline(monkeypatch, tmp_path):
    """An empty torch hub cache and a network that refuses every download (never hits the net)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_init_backbone_imagenet_offline_fails_with_a_clear_error(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(StvmError) as err:
        init_backbone(build_model("deeplabv2_r18", 4), "imagenet")
    msg = str(err.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in msg and "no network" in msg and "local path" in msg


def test_init_backbone_imagenet_uses_the_hub_cache(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = _torchvision_resnet18_file(cache / "resnet18-f37072fd.pth")
    model = build_model("deeplabv2_r18", 4)
    assert "ResNet18_Weights.IMAGENET1K_V1" in init_backbone(model, "imagenet")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_init_backbone_random_warns():
    model = build_model("deeplabv3_r18", 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="random"):
        desc = init_backbone(model, "random")
    assert "random" in desc
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- our checkpoint format ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", SMALL)
def test_save_load_round_trip(tmp_path, arch):
    torch.manual_seed(8)
    model = build_model(arch, 7).eval()
    randomize_bn(model, 8)
    if arch == "deeplabv2_r18":
        model.classifier.aspp_branches = 3
    meta = {"protocol": 16, "init": "random init", "params": {"lr": 0.1, "crop": [64, 64]}}
    save_model_checkpoint(model, tmp_path / "m.pt", **meta)
    loaded, got = load_model_checkpoint(tmp_path / "m.pt")
    assert got == {"arch": arch, "num_classes": 7, "head_dilations": list(paper_dilations(arch)), **meta}
    assert loaded.arch == arch and loaded.num_classes == 7
    if arch == "deeplabv2_r18":
        assert loaded.classifier.aspp_branches == 3
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_save_refuses_reserved_meta(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        save_model_checkpoint(build_model("deeplabv2_r18", 2), tmp_path / "m.pt", arch="x")


def test_load_model_checkpoint_rejects_wrong_format_and_mismatches(tmp_path):
    model = build_model("deeplabv3_r18", 3)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(StvmError, match="not an stvm model checkpoint"):
        load_model_checkpoint(tmp_path / "plain.pth")
    save_model_checkpoint(model, tmp_path / "m.pt")
    obj = torch.load(tmp_path / "m.pt", weights_only=True)
    obj["num_classes"] = 5
    torch.save(obj, tmp_path / "lying.pt")
    with pytest.raises(
        StvmError, match=r"shape mismatches: classifier\.4\.bias file \(3,\) vs model \(5,\)"
    ):
        load_model_checkpoint(tmp_path / "lying.pt")
    obj["num_classes"], obj["arch"] = 3, "deeplabv9"
    torch.save(obj, tmp_path / "arch.pt")
    with pytest.raises(StvmError, match="corrupt"):
        load_model_checkpoint(tmp_path / "arch.pt")


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("ran")
    return "payload"


class Payload:
    """An object whose unpickling would run code: a weights-only load must refuse it."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_checkpoints_are_loaded_weights_only(tmp_path):
    model = build_model("deeplabv2_r18", 2)
    save_model_checkpoint(model, tmp_path / "evil.pt", note=Payload())
    with pytest.raises(StvmError, match="weights-only"):
        load_model_checkpoint(tmp_path / "evil.pt")
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload()}, tmp_path / "evil_backbone.pth")
    with pytest.raises(StvmError, match="weights-only"):
        init_backbone(model, str(tmp_path / "evil_backbone.pth"))
    assert UNPICKLED == []


def test_unknown_arch_is_a_user_error():
    with pytest.raises(StvmError, match="unknown arch"):
        build_model("deeplabv2_r152", 19)
