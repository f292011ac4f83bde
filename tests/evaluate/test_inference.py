"""stvm.evaluate.inference: multi-scale/flip fusion and folder evaluation on a tiny fake dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stvm.data.labels import PROTOCOL_CLASSES
from stvm.errors import StvmError
from stvm.data.images import IMAGENET_MEAN, IMAGENET_STD
from stvm.evaluate.inference import evaluate_folder, predict_logits, predict_probs
from stvm.evaluate.score import score_folders


def _conv_model(seed: int, symmetric: bool, classes: int = 5) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(3, classes, 3, padding=1)
    with torch.no_grad():
        w = torch.randn(conv.weight.shape, generator=gen)
        conv.weight.copy_((w + w.flip(-1)) / 2 if symmetric else w)
        conv.bias.copy_(torch.randn(classes, generator=gen))
    return conv.eval()


def _image(seed: int, h: int = 24, w: int = 40) -> torch.Tensor:
    return torch.randn((2, 3, h, w), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_single_scale_no_flip_is_plain_inference_exactly():
    model, x = _conv_model(0, symmetric=False), _image(0)
    assert torch.equal(predict_logits(model, x, (24, 40), [1.0], False), model(x).softmax(1))
    up = F.interpolate(model(x).softmax(1), size=(48, 80), mode="bilinear", align_corners=False)
    assert torch.equal(predict_logits(model, x, (48, 80), [1.0], False), up)


@torch.no_grad()
def test_flip_with_flip_equivariant_model_matches_no_flip():
    x = _image(1)
    model = _conv_model(1, symmetric=True)
    assert torch.allclose(model(x.flip(-1)).flip(-1), model(x), atol=1e-5)  # precondition
    assert torch.allclose(
        predict_logits(model, x, (24, 40), [1.0], True),
        predict_logits(model, x, (24, 40), [1.0], False),
        atol=1e-6,
    )
    skewed = _conv_model(
        1, symmetric=False
    )  # flipping really changes the input of a non-symmetric model
    assert not torch.allclose(
        predict_logits(skewed, x, (24, 40), [1.0], True),
        predict_logits(skewed, x, (24, 40), [1.0], False),
        atol=1e-3,
    )


@torch.no_grad()
def test_multi_scale_shape_and_average():
    model, x = _conv_model(2, symmetric=False), _image(2)
    out = predict_logits(model, x, (30, 50), [0.5, 0.75, 1.25], True)
    assert out.shape == (2, 5, 30, 50)
    assert torch.allclose(out.sum(1), torch.ones(2, 30, 50), atol=1e-5)
    parts = []
    for size in [(12, 20), (18, 30), (30, 50)]:
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for p in (model(xs).softmax(1), model(xs.flip(-1)).softmax(1).flip(-1)):
            parts.append(F.interpolate(p, size=(30, 50), mode="bilinear", align_corners=False))
    assert torch.allclose(out, torch.stack(parts).mean(0), atol=1e-6)


class OracleModel(torch.nn.Module):
    """Reads the class encoded in the red channel (trainId * 10) and returns its one-hot logits."""

    def __init__(self, protocol: int) -> None:
        super().__init__()
        self.classes = PROTOCOL_CLASSES[protocol]
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
        trainid = torch.round(red / 10).long()
        logits = torch.stack([(trainid == t).float() * 20 for t in self.classes], dim=1)
        return logits + self.dummy * 0


def _fake_dataset(root: Path, n: int = 3, h: int = 32, w: int = 48) -> tuple[Path, Path]:
    """Images (red = 10 * trainId) and same-size trainId labels in 8x8 blocks, with ignore."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(n):
        blocks = rng.integers(0, 19, (h // 8, w // 8)).astype(np.uint8)
        label = np.kron(blocks, np.ones((8, 8), np.uint8))
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = label * 10
        image[..., 1] = 77
        label[:3, :5] = 255
        Image.fromarray(image).save(root / "images" / f"frame_{k}.png")
        Image.fromarray(label).save(root / "labels" / f"frame_{k}.png")
    return root / "images", root / "labels"


@pytest.mark.parametrize("protocol", [19, 16])
def test_evaluate_folder_oracle_and_written_predictions(tmp_path, protocol):
    images, labels = _fake_dataset(tmp_path)
    model = OracleModel(protocol).train()
    scores, matrix = evaluate_folder(
        model,
        images,
        labels,
        protocol=protocol,
        input_size=(24, 16),
        scales=[1.0],
        flip=False,
        device="cpu",
        pred_dir=tmp_path / "pred",
        color_dir=tmp_path / "color",
        show_progress=False,
    )
    assert model.training  # mode restored
    assert matrix.shape == (19, 20)
    assert scores["miou"] == pytest.approx(100.0)
    assert all(v in (None, 100.0) for v in scores["iou"].values())
    if protocol == 16:
        assert scores["miou13"] == pytest.approx(100.0)
        assert (
            matrix[9].sum() > 0
        )  # terrain GT is in the 19-class matrix but ignored by protocol 16
    pred = np.array(Image.open(tmp_path / "pred" / "frame_0.png"))
    label = np.array(Image.open(labels / "frame_0.png"))
    assert pred.shape == label.shape and set(np.unique(pred)) <= set(PROTOCOL_CLASSES[protocol])
    keep = np.isin(label, PROTOCOL_CLASSES[protocol])
    assert np.array_equal(pred[keep], label[keep])  # trainIds on disk, not protocol indices
    assert np.array(Image.open(tmp_path / "color" / "frame_0.png")).shape == label.shape + (3,)
    assert score_folders(tmp_path / "pred", labels, protocol) == scores


def test_evaluate_folder_imperfect_model_matches_score_folders(tmp_path):
    images, labels = _fake_dataset(tmp_path)
    model = torch.nn.Sequential(_conv_model(3, symmetric=False, classes=19))
    scores, _ = evaluate_folder(
        model,
        images,
        labels,
        protocol=19,
        input_size=(24, 16),
        scales=[0.75, 1.0],
        flip=True,
        device="cpu",
        pred_dir=tmp_path / "pred",
        show_progress=False,
    )
    assert scores["miou"] < 100.0
    assert score_folders(tmp_path / "pred", labels, 19) == scores


@pytest.mark.parametrize("batch_size", [2, 5])
def test_batched_evaluation_gives_the_numbers_of_batch_one(tmp_path, batch_size):
    images, labels = _fake_dataset(tmp_path, n=5)
    odd = labels / "frame_4.png"  # one label at another resolution: per-image resize inside a batch
    Image.open(odd).resize((72, 48), Image.NEAREST).save(odd)
    model = torch.nn.Sequential(_conv_model(3, symmetric=False, classes=19))
    kw = dict(protocol=19, input_size=(24, 16), scales=[0.75, 1.0], flip=True, device="cpu", show_progress=False)
    one, m_one = evaluate_folder(model, images, labels, batch_size=1, **kw)
    many, m_many = evaluate_folder(model, images, labels, batch_size=batch_size, **kw)
    assert m_one.sum() == m_many.sum() > 0 and np.abs(m_one - m_many).sum() <= 2  # at most a float tie flips
    assert many["miou"] == pytest.approx(one["miou"], abs=1e-3)


@torch.no_grad()
def test_flip_pairs_in_one_batch_match_separate_forwards():
    from stvm.models.deeplab import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny", 19).eval()
    x = _image(4, 32, 48)
    batched = predict_probs(model, x, [(32, 48), (40, 60)], [0.75, 1.0], True)
    for i, size in enumerate([(32, 48), (40, 60)]):
        alone = predict_logits(model, x[i : i + 1], size, [0.75], False) + predict_logits(
            model, x[i : i + 1].flip(-1), size, [0.75], False).flip(-1)
        alone = alone + predict_logits(model, x[i : i + 1], size, [1.0], False) + predict_logits(
            model, x[i : i + 1].flip(-1), size, [1.0], False).flip(-1)
        assert batched[i].shape == (19, *size)
        torch.testing.assert_close(batched[i], alone[0] / 4, atol=1e-5, rtol=1e-4)


def test_evaluate_folder_errors(tmp_path):
    images, labels = _fake_dataset(tmp_path)
    with pytest.raises(StvmError, match="needs 16"):
        evaluate_folder(
            OracleModel(19),
            images,
            labels,
            protocol=16,
            input_size=(24, 16),
            scales=[1.0],
            flip=False,
            device="cpu",
            show_progress=False,
        )
    (labels / "frame_1.png").unlink()
    with pytest.raises(StvmError) as err:
        evaluate_folder(
            OracleModel(19),
            images,
            labels,
            protocol=19,
            input_size=(24, 16),
            scales=[1.0],
            flip=False,
            device="cpu",
            show_progress=False,
        )
    assert str(err.value).startswith(str(images / "frame_1.png")) and "no label" in str(err.value)
