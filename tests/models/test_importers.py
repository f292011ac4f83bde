"""`stvm import --source torchvision-deeplabv3 | stvm`: more source models in (stvm/models/importers.py)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from stvm.cli import main
from stvm.compat import torchvision
from stvm.errors import StvmError
from stvm.models.deeplab import build_model
from stvm.models.importers import import_stvm, import_torchvision_deeplabv3, infer_arch
from stvm.models.weights import load_model_checkpoint


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A torchvision deeplabv3_resnet50 (21 classes, aux head) state dict with non-default BN statistics."""
    torch.manual_seed(0)
    net = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                             aux_loss=True).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("tv") / "deeplabv3_resnet50_coco.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_torchvision_head_is_replaced_only_when_asked_with_a_warning(torchvision_file):
    path, net = torchvision_file
    with pytest.raises(StvmError, match=r"classifier\.4\.weight file \(21, 256, 1, 1\) vs model \(19, 256, 1, 1\)"
                                        r".*--replace-head"):
        import_torchvision_deeplabv3(path, 19)
    with pytest.warns(UserWarning, match="21-class head classifier.4 is replaced"):
        model = import_torchvision_deeplabv3(path, 19, replace_head=True)
    model.eval()
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(model.features(x), net.backbone(x)["out"])  # the backbone came over unchanged
        ours = torch.nn.Sequential(*list(model.classifier)[:4])(model.features(x))  # ASPP..ReLU, before the new layer
        theirs = torch.nn.Sequential(*list(net.classifier)[:4])(net.backbone(x)["out"])
    assert torch.equal(ours, theirs)
    assert model.classifier[4].weight.shape == (19, 256, 1, 1)


def test_torchvision_file_with_the_right_class_count_loads_whole(tmp_path):
    net = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=19).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "tv19.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing is replaced
        model = import_torchvision_deeplabv3(tmp_path / "tv19.pth", 19, replace_head=True).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.inference_mode():
        assert torch.allclose(model(x), net(x)["out"], atol=1e-5)


def test_stvm_files_of_other_versions(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18", 16)
    state = model.state_dict()
    old = {k: v for k, v in state.items() if not k.endswith(("_extra_state", "num_batches_tracked"))}
    # a model file from before ASPPv2 kept its branch count, a train_source and an adapt checkpoint
    torch.save({"format": "stvm-model-v1", "arch": "deeplabv2_r18", "num_classes": 16, "model": old, "protocol": 16,
                "stage": "train_source"}, tmp_path / "old.pt")
    torch.save({"model": state, "optimizer": {}, "iteration": 7}, tmp_path / "train_ckpt.pt")
    torch.save({"nets": {"student": state, "teacher": state}, "iteration": 3}, tmp_path / "adapt_ckpt.pt")
    for name in ("old.pt", "train_ckpt.pt", "adapt_ckpt.pt"):
        got, meta = import_stvm(tmp_path / name)
        assert (got.arch, got.num_classes) == ("deeplabv2_r18", 16)
        assert all(torch.equal(got.state_dict()[k], v) for k, v in old.items())
    assert import_stvm(tmp_path / "old.pt")[1]["import_filled_defaults"] == ["classifier._extra_state"]
    assert main(["import", "--source", "stvm", "--pth", str(tmp_path / "train_ckpt.pt"), "--out",
                 str(tmp_path / "model.pt")]) == 0
    loaded, meta = load_model_checkpoint(tmp_path / "model.pt")
    assert meta["protocol"] == 16 and meta["stage"] == "import" and loaded.arch == "deeplabv2_r18"


@pytest.mark.parametrize("arch", ["deeplabv2_r101", "deeplabv3_r50", "deeplabv2_r18", "deeplabv3_r18",
                                  "deeplabv2_tiny"])
def test_arch_is_read_from_the_keys(arch):
    state = {k: torch.empty(v.shape) for k, v in build_model(arch, 13).state_dict().items()}
    assert infer_arch(state, "f.pt") == (arch, 13)


def test_a_mismatch_lists_missing_and_unexpected_keys(tmp_path, capsys):
    state = build_model("deeplabv3_r18", 19).state_dict()
    state["backbone.extra.weight"] = state.pop("backbone.layer2.0.conv1.weight")
    torch.save({"model": state, "optimizer": {}}, tmp_path / "odd.pt")
    code = main(["import", "--source", "stvm", "--pth", str(tmp_path / "odd.pt"), "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(tmp_path / "odd.pt") in err
    assert "1 missing keys: backbone.layer2.0.conv1.weight" in err and "1 unexpected keys: backbone.extra.weight" in err
    assert not (tmp_path / "m.pt").exists()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "junk.pt")
    with pytest.raises(StvmError, match="not an stvm DeepLab state dict"):
        import_stvm(tmp_path / "junk.pt")


def test_cli_torchvision_import_warns_and_writes_a_model(torchvision_file, tmp_path, capsys):
    path, _ = torchvision_file
    assert main(["import", "--source", "torchvision-deeplabv3", "--pth", str(path), "--out", str(tmp_path / "a.pt")]) == 2
    assert "--replace-head" in capsys.readouterr().err and not (tmp_path / "a.pt").exists()
    with pytest.warns(UserWarning, match="replaced by a fresh random 19-class layer"):
        code = main(["import", "--source", "torchvision-deeplabv3", "--replace-head", "--pth", str(path), "--out",
                     str(tmp_path / "a.pt")])
    assert code == 0 and json.loads(capsys.readouterr().out)["arch"] == "deeplabv3_r50"
    assert load_model_checkpoint(tmp_path / "a.pt")[1]["protocol"] == 19
