"""Label spaces: Cityscapes trainIds, raw-id lookup tables per dataset encoding, 19/16/13 protocols.

Pure data (no I/O). On disk every prepared label holds Cityscapes *trainIds* 0..18 with ``IGNORE``
(255) for everything else; a *protocol* (19, 16 or 13 classes) then selects classes and renumbers
them contiguously in trainId order. Sources: ``shared/research/formats.md`` sections 1-4
(cityscapesScripts ``helpers/labels.py``, DAFormer ``tools/convert_datasets/{gta,synthia}.py``,
ProDA/MaxSquareLoss class subsets, URMA's Cross-City mapper).
"""

from __future__ import annotations

import numpy as np

from stvm.errors import StvmError

IGNORE = 255

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)

# Cityscapes label id -> trainId for the 19 evaluated classes (ignoreInEval=False); all else ignore.
_CITYSCAPES_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

# SYNTHIA-RAND-CITYSCAPES class id (R channel of GT/LABELS) -> trainId, as in DAFormer's converter.
# void 0, parking-slot 13, road-work 14 and lanemarking 22 -> ignore. terrain 16, truck 18 and
# train 20 are mapped although SYNTHIA never contains them.
_SYNTHIA_IDS = {
    1: 10,
    2: 2,
    3: 0,
    4: 1,
    5: 4,
    6: 8,
    7: 5,
    8: 13,
    9: 7,
    10: 11,
    11: 18,
    12: 17,
    15: 6,
    16: 9,
    17: 12,
    18: 14,
    19: 15,
    20: 16,
    21: 3,
}


def _lut(mapping: dict[int, int]) -> np.ndarray:
    """A read-only 256-entry uint8 table: ``mapping`` where given, IGNORE everywhere else."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for raw, train_id in mapping.items():
        table[raw] = train_id
    table.setflags(write=False)
    return table


CITYSCAPES_ID_TO_TRAINID = _lut(_CITYSCAPES_IDS)  # also GTA5 and NTHU (they store Cityscapes ids)
SYNTHIA_ID_TO_TRAINID = _lut(_SYNTHIA_IDS)
TRAINID_IDENTITY = _lut({i: i for i in range(19)})  # labels already in trainIds (255 = ignore)

# Raw id -> trainId table per on-disk label encoding.
ID_TO_TRAINID: dict[str, np.ndarray] = {
    "cityscapes": CITYSCAPES_ID_TO_TRAINID,
    "gta5": CITYSCAPES_ID_TO_TRAINID,
    "nthu": CITYSCAPES_ID_TO_TRAINID,
    "synthia": SYNTHIA_ID_TO_TRAINID,
    "trainids": TRAINID_IDENTITY,
}

# Largest raw id a label file of each encoding may contain; anything above is reported as corrupt.
# GTA5 allows 34 because ProDA's GTA5 loader lists 34 among its void ids (formats.md section 2);
# it maps to ignore like every other non-evaluated id.
# "trainids" (a user's own labels, `prepare --dataset folder`) also allows IGNORE (255).
VALID_ID_MAX: dict[str, int] = {"cityscapes": 33, "gta5": 34, "synthia": 22, "nthu": 33, "trainids": 18}

PROTOCOL_CLASSES: dict[int, tuple[int, ...]] = {
    19: tuple(range(19)),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),  # minus terrain, truck, train
    13: (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),  # 16 minus wall, fence, pole
}

# Positions inside the 16-class order averaged for SYNTHIA mIoU* (13 of the 16 IoUs).
MIOU13_OF_16: tuple[int, ...] = tuple(PROTOCOL_CLASSES[16].index(t) for t in PROTOCOL_CLASSES[13])


def _classes(protocol: int) -> tuple[int, ...]:
    if protocol not in PROTOCOL_CLASSES:
        raise StvmError(None, f"protocol must be one of 19, 16, 13 (got {protocol!r})")
    return PROTOCOL_CLASSES[protocol]


def protocol_lut(protocol: int) -> np.ndarray:
    """256-entry uint8 table: trainId -> contiguous class index within ``protocol``, else 255."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for index, train_id in enumerate(_classes(protocol)):
        table[train_id] = index
    return table


def protocol_class_names(protocol: int) -> tuple[str, ...]:
    """Class names of ``protocol`` in its index order."""
    return tuple(CLASS_NAMES[t] for t in _classes(protocol))


def protocol_palette(protocol: int) -> tuple[tuple[int, int, int], ...]:
    """Official colours of ``protocol``'s classes in its index order."""
    return tuple(PALETTE[t] for t in _classes(protocol))


def colorize(label: np.ndarray, protocol: int = 19) -> np.ndarray:
    """HxWx3 uint8 RGB of a class-index map of ``protocol`` (trainIds for 19); others black."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(_classes(protocol))] = np.asarray(protocol_palette(protocol), dtype=np.uint8)
    return colours[np.asarray(label, dtype=np.uint8)]
