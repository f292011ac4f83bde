"""The head geometry as a model parameter (stvm.models.deeplab, weights): recorded, refused when mixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stvm.errors import StvmError
from stvm.models.deeplab import (
    ASPP_V2_DILATIONS,
    build_head,
    build_model,
    feature_side,
    paper_dilations,
    scaled_dilations,
)
from stvm.models.weights import load_model_checkpoint, save_model_checkpoint
from stvm.training import load_checkpoint, save_checkpoint


def _dilations(head: torch.nn.Module) -> list[int]:
    return [m.dilation[0] for m in head.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]


def test_the_paper_geometry_is_the_default() -> None:
    assert ASPP_V2_DILATIONS == (6, 12, 18, 24)
    v2 = build_model("deeplabv2_r18", 19)
    assert _dilations(v2.classifier) == [6, 12, 18, 24] and v2.dilations == (6, 12, 18, 24)
    assert [m.padding[0] for m in v2.classifier.branches] == [6, 12, 18, 24]
    assert _dilations(build_model("deeplabv3_r18", 19).classifier)[:3] == [12, 24, 36]


def test_the_default_is_bit_identical_to_an_explicit_paper_build() -> None:
    torch.manual_seed(0)
    a = build_model("deeplabv2_r18", 19).eval()
    torch.manual_seed(0)
    b = build_model("deeplabv2_r18", 19, paper_dilations("deeplabv2_r18")).eval()
    x = torch.rand(1, 3, 64, 96)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("arch", ["deeplabv2_r18", "deeplabv3_r18"])
def test_a_checkpoint_records_its_geometry_and_rebuilds_it(arch: str, tmp_path: Path) -> None:
    dil = (1, 2, 3, 4) if arch.startswith("deeplabv2") else (1, 2, 3)
    model = build_model(arch, 19, dil).eval()
    save_model_checkpoint(model, tmp_path / "m.pt", protocol=19)
    assert load_checkpoint(tmp_path / "m.pt")["head_dilations"] == list(dil)
    back, meta = load_model_checkpoint(tmp_path / "m.pt")
    assert back.dilations == dil and meta["head_dilations"] == list(dil)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(model(x), back.eval()(x))
    paper = build_model(arch, 19).eval()
    paper.load_state_dict(model.state_dict())
    assert not torch.equal(model(x), paper(x))  # same shapes, another function: why it is recorded


def test_a_checkpoint_of_one_geometry_refuses_to_load_as_another(tmp_path: Path) -> None:
    save_model_checkpoint(build_model("deeplabv2_r18", 19, (1, 2, 2, 3)), tmp_path / "m.pt", protocol=19)
    with pytest.raises(StvmError, match=r"m.pt: written with head dilations \[1, 2, 2, 3\]"):
        load_model_checkpoint(tmp_path / "m.pt", expect_dilations=(6, 12, 18, 24))
    model, _ = load_model_checkpoint(tmp_path / "m.pt", expect_dilations=(1, 2, 2, 3))
    assert model.dilations == (1, 2, 2, 3)


def test_a_file_without_the_record_is_the_paper_geometry(tmp_path: Path) -> None:
    save_model_checkpoint(build_model("deeplabv2_r18", 19), tmp_path / "m.pt", protocol=19)
    obj = load_checkpoint(tmp_path / "m.pt")
    del obj["head_dilations"]  # as written before the geometry was recorded
    save_checkpoint(obj, tmp_path / "old.pt")
    assert load_model_checkpoint(tmp_path / "old.pt")[0].dilations == (6, 12, 18, 24)


@pytest.mark.parametrize("bad", [[1, 2, 3], [0, 1, 2, 3], "x"])
def test_a_corrupt_record_is_one_error(bad, tmp_path: Path) -> None:
    save_model_checkpoint(build_model("deeplabv2_r18", 19), tmp_path / "m.pt", protocol=19)
    obj = load_checkpoint(tmp_path / "m.pt")
    obj["head_dilations"] = bad
    save_checkpoint(obj, tmp_path / "bad.pt")
    with pytest.raises(StvmError, match="bad.pt: corrupt stvm-model-v1 checkpoint: deeplabv2_r18: head dilations"):
        load_model_checkpoint(tmp_path / "bad.pt")


def test_the_metric_head_copies_the_classifier_geometry() -> None:
    assert _dilations(build_head("deeplabv2_r18", 512, 16, (1, 2, 2, 3))) == [1, 2, 2, 3]


@pytest.mark.parametrize("side", [32, 64, 96, 128, 512])
def test_feature_side_is_what_the_backbone_gives(side: int) -> None:
    for arch in ("deeplabv2_r18", "deeplabv3_r18"):
        with torch.no_grad():
            f = build_model(arch, 2).eval().features(torch.zeros(1, 3, side, 8))
        assert f.shape[2] == feature_side(arch, side)


def test_scaled_dilations_keep_the_papers_ratio() -> None:
    assert scaled_dilations("deeplabv2_r18", 65) == (6, 12, 18, 24)
    assert scaled_dilations("deeplabv2_r18", 9) == (1, 2, 2, 3)  # every tap inside a 9-row map
    assert max(scaled_dilations("deeplabv2_r18", 9)) < 9
    assert scaled_dilations("deeplabv3_r18", 1) == (1, 1, 1)
