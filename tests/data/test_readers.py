"""Raw-layout listing and decoding, on tiny format-faithful fixtures (tests/fixtures/raw.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from stvm.data import readers as R
from stvm.errors import StvmError
from tests.fixtures import raw as F


def test_gta5_lists_sorted_pairs(tmp_path):
    data = F.make_gta5(tmp_path / "gta", n=4)
    (tmp_path / "gta" / "images" / ".hidden.png").write_bytes(b"x")
    samples = R.gta5_samples(tmp_path / "gta")
    assert [s.stem for s in samples] == ["00001", "00002", "00003", "00004"] == data.stems["all"]
    assert samples[0].image == tmp_path / "gta" / "images" / "00001.png"
    assert samples[0].label == tmp_path / "gta" / "labels" / "00001.png"


def test_gta5_p_label_gives_palette_indices_not_colours(tmp_path):
    data = F.make_gta5(tmp_path / "gta", n=1)
    path = tmp_path / "gta" / "labels" / "00001.png"
    assert Image.open(path).mode == "P"
    raw = R.read_label(path, "gta5")
    assert raw.dtype == np.uint8 and raw.shape == (F.SIZE[1], F.SIZE[0])
    np.testing.assert_array_equal(raw, data.raw["00001"])
    assert set(np.unique(raw)) == set(range(35))  # 34 is a valid (void) GTA5 id


def test_gta5_l_label_accepted(tmp_path):
    data = F.make_gta5(tmp_path / "gta", n=1, label_mode="L")
    np.testing.assert_array_equal(
        R.read_label(tmp_path / "gta/labels/00001.png", "gta5"), data.raw["00001"]
    )


def test_rgb_label_is_rejected_with_its_name(tmp_path):
    data = F.make_gta5(tmp_path / "gta", n=1, defect="rgb_label")
    with pytest.raises(StvmError, match="mode RGB") as err:
        R.read_label(data.bad, "gta5")
    assert str(err.value).startswith(str(data.bad))


def test_synthia_reads_the_red_channel_of_16bit_labels(tmp_path):
    data = F.make_synthia(tmp_path / "syn", n=2)
    samples = R.synthia_samples(tmp_path / "syn")
    assert [s.stem for s in samples] == ["0000000", "0000001"]
    raw16 = cv2.imread(str(samples[0].label), cv2.IMREAD_UNCHANGED)
    assert (
        raw16.dtype == np.uint16 and raw16.shape[2] == 3 and raw16[:, :, :2].max() > 255
    )  # junk in G/B
    np.testing.assert_array_equal(R.read_label(samples[0].label, "synthia"), data.raw["0000000"])


@pytest.mark.parametrize(
    "defect,message", [("gray_label", "got 1 channel"), ("rgba_label", "got 4 channel")]
)
def test_synthia_wrong_channels(tmp_path, defect, message):
    data = F.make_synthia(tmp_path / "syn", n=1, defect=defect)
    with pytest.raises(StvmError, match=message) as err:
        R.read_label(data.bad, "synthia")
    assert str(data.bad) in str(err.value)


@pytest.mark.parametrize(
    "maker,encoding,values",
    [
        (F.make_gta5, "gta5", "35, 42"),
        (F.make_synthia, "synthia", "23, 30"),
    ],
)
def test_out_of_range_ids_are_named(tmp_path, maker, encoding, values):
    data = maker(tmp_path / "d", n=1, defect="bad_id")
    with pytest.raises(StvmError, match=f"outside the {encoding} range .*: {values}$") as err:
        R.read_label(data.bad, encoding)
    assert str(data.bad) in str(err.value)


def test_cityscapes_pairs_by_stem_and_ignores_other_gtfine_files(tmp_path):
    F.make_cityscapes(tmp_path / "cs")
    train = R.cityscapes_samples(tmp_path / "cs", "train")
    assert [s.stem for s in train] == [
        "aachen_000000_000019",
        "aachen_000001_000020",
        "bochum_000000_000019",
    ]
    assert train[0].label.name == "aachen_000000_000019_gtFine_labelIds.png"
    assert (train[0].label.parent / "aachen_000000_000019_gtFine_instanceIds.png").exists()
    val = R.cityscapes_samples(tmp_path / "cs", "val")
    assert [s.stem.split("_")[0] for s in val] == ["frankfurt", "frankfurt", "lindau"]
    assert Image.open(train[0].label).mode == "L"


def test_nthu_train_is_unlabeled_with_png_fallback(tmp_path):
    F.make_nthu(tmp_path / "n", city="Rio", train_ext=".png")
    train = R.nthu_samples(tmp_path / "n", "Rio", "train")
    assert [s.label for s in train] == [None] * 3 and train[0].image.suffix == ".png"
    test = R.nthu_samples(tmp_path / "n", "Rio", "test")
    assert test[0].stem == "pano_00000_1_180" and test[0].label.name == "pano_00000_1_180_eval.png"


def test_nthu_prefers_jpg(tmp_path):
    F.make_nthu(tmp_path / "n")
    F.write_rgb(
        tmp_path / "n/Rome/Images/Train/pano_00000_0_180.png", np.zeros((4, 4, 3), np.uint8)
    )
    train = R.nthu_samples(tmp_path / "n", "Rome", "train")
    assert len(train) == 3 and {s.image.suffix for s in train} == {".jpg"}


def test_read_image_returns_rgb_order(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    F.write_rgb(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(
        R.read_image(tmp_path / "a.png"), np.asarray(Image.open(tmp_path / "a.png"))
    )
    assert R.read_image(tmp_path / "a.png")[0, 0].tolist() == [200, 0, 0]


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((6, 8), np.uint8), "3 channels, got 1"),
        (np.zeros((6, 8, 3), np.uint16), "8-bit"),
    ],
)
def test_read_image_rejects_wrong_formats(tmp_path, array, message):
    path = tmp_path / "x.png"
    assert cv2.imwrite(str(path), array)
    with pytest.raises(StvmError, match=message) as err:
        R.read_image(path)
    assert str(path) in str(err.value)


def test_corrupt_and_missing_files(tmp_path):
    data = F.make_gta5(tmp_path / "g", n=1, defect="corrupt_image")
    with pytest.raises(StvmError, match="corrupt") as err:
        R.read_image(data.bad)
    assert str(data.bad) in str(err.value)
    data = F.make_nthu(tmp_path / "n", n_test=1, defect="corrupt_label")
    with pytest.raises(StvmError, match="corrupt"):
        R.read_label(data.bad, "nthu")
    with pytest.raises(StvmError, match="cannot read") as err:
        R.read_label(tmp_path / "nope.png", "cityscapes")
    assert "nope.png" in str(err.value)


@pytest.mark.parametrize("defect", ["missing_label", "extra_label"])
@pytest.mark.parametrize(
    "maker,lister",
    [
        (F.make_gta5, R.gta5_samples),
        (F.make_synthia, R.synthia_samples),
        (F.make_cityscapes, lambda root: R.cityscapes_samples(root, "train")),
        (F.make_nthu, lambda root: R.nthu_samples(root, "Rome", "test")),
    ],
)
def test_unmatched_files_are_named(tmp_path, maker, lister, defect):
    data = maker(tmp_path / "d", defect=defect)
    with pytest.raises(StvmError, match="has no (label|image)") as err:
        lister(tmp_path / "d")
    assert str(err.value).startswith(f"{data.bad}: ")


@pytest.mark.parametrize(
    "maker,lister",
    [
        (F.make_gta5, R.gta5_samples),
        (F.make_synthia, R.synthia_samples),
        (F.make_cityscapes, lambda root: R.cityscapes_samples(root, "train")),
        (F.make_nthu, lambda root: R.nthu_samples(root, "Rome", "test")),
    ],
)
def test_empty_split_missing_root_and_subfolder(tmp_path, maker, lister):
    data = maker(tmp_path / "d", defect="empty")
    with pytest.raises(StvmError, match="empty split") as err:
        lister(tmp_path / "d")
    assert str(err.value).startswith(f"{data.bad}: ")
    with pytest.raises(StvmError, match="dataset root not found"):
        lister(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(StvmError, match="not found") as err:
        lister(tmp_path / "other")
    assert str(tmp_path / "other") in str(err.value)
