"""Label tables against cityscapesScripts and the tables in shared/research/formats.md."""

from __future__ import annotations

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, labels, name2label, trainId2label

from stvm.data import labels as L
from stvm.errors import StvmError

# formats.md 1.3: the 16- and 13-class sets as *Cityscapes ids* (ProDA / MaxSquareLoss).
IDS_16 = [7, 8, 11, 12, 13, 17, 19, 20, 21, 23, 24, 25, 26, 28, 32, 33]
IDS_13 = [7, 8, 11, 19, 20, 21, 23, 24, 25, 26, 28, 32, 33]
# formats.md 3: SYNTHIA id -> Cityscapes class name (None = ignore) and 16-class index column.
SYNTHIA = {
    0: (None, 255),
    1: ("sky", 9),
    2: ("building", 2),
    3: ("road", 0),
    4: ("sidewalk", 1),
    5: ("fence", 4),
    6: ("vegetation", 8),
    7: ("pole", 5),
    8: ("car", 12),
    9: ("traffic sign", 7),
    10: ("person", 10),
    11: ("bicycle", 15),
    12: ("motorcycle", 14),
    13: (None, 255),
    14: (None, 255),
    15: ("traffic light", 6),
    16: ("terrain", 255),
    17: ("rider", 11),
    18: ("truck", 255),
    19: ("bus", 13),
    20: ("train", 255),
    21: ("wall", 3),
    22: (None, 255),
}
# formats.md 4: NTHU Cityscapes id -> 13-class index (URMA label_mapper); everything else 255.
NTHU_13 = {
    7: 0,
    8: 1,
    11: 2,
    19: 3,
    20: 4,
    21: 5,
    23: 6,
    24: 7,
    25: 8,
    26: 9,
    28: 10,
    32: 11,
    33: 12,
}


def test_lut_shapes_and_unlisted_ids_are_ignored():
    for lut in (L.CITYSCAPES_ID_TO_TRAINID, L.SYNTHIA_ID_TO_TRAINID):
        assert lut.shape == (256,) and lut.dtype == np.uint8
    assert (L.CITYSCAPES_ID_TO_TRAINID[34:] == 255).all()
    assert (L.SYNTHIA_ID_TO_TRAINID[23:] == 255).all()
    assert L.IGNORE == 255


@pytest.mark.parametrize("label", labels, ids=lambda lab: f"{lab.id}-{lab.name}")
def test_cityscapes_table_matches_cityscapesscripts(label):
    raw = label.id & 0xFF  # -1 (license plate) would wrap to 255 in a uint8 image
    got = int(L.CITYSCAPES_ID_TO_TRAINID[raw])
    assert (got == 255) == label.ignoreInEval
    if not label.ignoreInEval:
        assert got == label.trainId
        assert L.CLASS_NAMES[got] == label.name
        assert L.PALETTE[got] == label.color


def test_every_cityscapes_id_is_covered():
    assert sorted(lab.id for lab in labels) == [-1, *range(34)]
    assert len(L.CLASS_NAMES) == len(L.PALETTE) == 19
    for train_id in range(19):
        assert L.CLASS_NAMES[train_id] == trainId2label[train_id].name


def test_gta5_and_nthu_use_the_cityscapes_table():
    for enc in ("gta5", "nthu", "cityscapes"):
        assert L.ID_TO_TRAINID[enc] is L.CITYSCAPES_ID_TO_TRAINID
    assert L.ID_TO_TRAINID["synthia"] is L.SYNTHIA_ID_TO_TRAINID
    assert L.VALID_ID_MAX == {"cityscapes": 33, "gta5": 34, "synthia": 22, "nthu": 33, "trainids": 18}
    assert L.ID_TO_TRAINID["trainids"][:19].tolist() == list(range(19))
    assert (L.ID_TO_TRAINID["trainids"][19:] == 255).all()


def test_luts_are_read_only():
    with pytest.raises(ValueError):
        L.CITYSCAPES_ID_TO_TRAINID[0] = 3


def test_protocol_sets_match_the_documented_cityscapes_ids():
    assert L.PROTOCOL_CLASSES[19] == tuple(range(19))
    assert L.PROTOCOL_CLASSES[16] == tuple(id2label[i].trainId for i in IDS_16)
    assert L.PROTOCOL_CLASSES[13] == tuple(id2label[i].trainId for i in IDS_13)
    dropped16 = {L.CLASS_NAMES[t] for t in range(19)} - set(L.protocol_class_names(16))
    assert dropped16 == {"terrain", "truck", "train"}
    assert set(L.protocol_class_names(16)) - set(L.protocol_class_names(13)) == {
        "wall",
        "fence",
        "pole",
    }


def test_miou13_positions_within_16():
    assert L.MIOU13_OF_16 == (
        0,
        1,
        2,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
    )  # MaxSquareLoss synthia_set_16_to_13
    names16 = L.protocol_class_names(16)
    assert [names16[i] for i in L.MIOU13_OF_16] == list(L.protocol_class_names(13))


@pytest.mark.parametrize("protocol", [19, 16, 13])
def test_protocol_lut_is_contiguous_in_trainid_order(protocol):
    lut = L.protocol_lut(protocol)
    assert lut.shape == (256,) and lut.dtype == np.uint8
    kept = [t for t in range(256) if lut[t] != 255]
    assert kept == list(L.PROTOCOL_CLASSES[protocol])
    assert [int(lut[t]) for t in kept] == list(range(protocol))
    names = L.protocol_class_names(protocol)
    assert [trainId2label[t].name for t in kept] == list(names)
    assert L.protocol_palette(protocol) == tuple(trainId2label[t].color for t in kept)


def test_unknown_protocol_is_a_user_error():
    with pytest.raises(StvmError, match="protocol"):
        L.protocol_lut(18)


def test_synthia_table_as_documented():
    lut16 = L.protocol_lut(16)
    for sid, (name, index16) in SYNTHIA.items():
        expected = 255 if name is None else name2label[name].trainId
        assert L.SYNTHIA_ID_TO_TRAINID[sid] == expected, sid
        assert lut16[L.SYNTHIA_ID_TO_TRAINID[sid]] == index16, sid
    assert L.SYNTHIA_ID_TO_TRAINID[22] == 255  # lanemarking -> ignore (majority, not CRST's road)


def test_nthu_13_class_mapping_is_protocol_13_of_trainids():
    via_trainids = L.protocol_lut(13)[L.CITYSCAPES_ID_TO_TRAINID]
    expected = np.full(256, 255, dtype=np.uint8)
    for cid, index in NTHU_13.items():
        expected[cid] = index
    np.testing.assert_array_equal(via_trainids, expected)


def test_colorize_uses_official_colours_and_black_for_ignore():
    lab = np.array([[0, 10, 255], [18, 13, 19]], dtype=np.uint8)
    rgb = L.colorize(lab)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == trainId2label[0].color
    assert tuple(rgb[0, 1]) == trainId2label[10].color
    assert tuple(rgb[1, 0]) == trainId2label[18].color
    assert tuple(rgb[0, 2]) == (0, 0, 0) and tuple(rgb[1, 2]) == (
        0,
        0,
        0,
    )  # 255 and out-of-protocol 19
    idx16 = np.array([[9, 15, 16]], dtype=np.uint8)  # sky, bicycle, beyond 16 classes
    rgb16 = L.colorize(idx16, protocol=16)
    assert tuple(rgb16[0, 0]) == name2label["sky"].color
    assert tuple(rgb16[0, 1]) == name2label["bicycle"].color
    assert tuple(rgb16[0, 2]) == (0, 0, 0)
