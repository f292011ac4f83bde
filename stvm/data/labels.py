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

# Cityscapes label table (cityscapesScripts helpers/labels.py): id -> (name, colour). The one
# label table: the 19 class names, their colours and the id -> trainId map derive from it.
CITYSCAPES_LABELS: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("unlabeled", (0, 0, 0)), 1: ("ego vehicle", (0, 0, 0)),
    2: ("rectification border", (0, 0, 0)), 3: ("out of roi", (0, 0, 0)),
    4: ("static", (0, 0, 0)), 5: ("dynamic", (111, 74, 0)), 6: ("ground", (81, 0, 81)),
    7: ("road", (128, 64, 128)), 8: ("sidewalk", (244, 35, 232)), 9: ("parking", (250, 170, 160)),
    10: ("rail track", (230, 150, 140)), 11: ("building", (70, 70, 70)),
    12: ("wall", (102, 102, 156)), 13: ("fence", (190, 153, 153)),
    14: ("guard rail", (180, 165, 180)), 15: ("bridge", (150, 100, 100)),
    16: ("tunnel", (150, 120, 90)), 17: ("pole", (153, 153, 153)),
    18: ("polegroup", (153, 153, 153)), 19: ("traffic light", (250, 170, 30)),
    20: ("traffic sign", (220, 220, 0)), 21: ("vegetation", (107, 142, 35)),
    22: ("terrain", (152, 251, 152)), 23: ("sky", (70, 130, 180)),
    24: ("person", (220, 20, 60)), 25: ("rider", (255, 0, 0)), 26: ("car", (0, 0, 142)),
    27: ("truck", (0, 0, 70)), 28: ("bus", (0, 60, 100)), 29: ("caravan", (0, 0, 90)),
    30: ("trailer", (0, 0, 110)), 31: ("train", (0, 80, 100)), 32: ("motorcycle", (0, 0, 230)),
    33: ("bicycle", (119, 11, 32)),
}
#: The 19 evaluation classes as Cityscapes ids, in trainId order.
TRAIN_CLASS_IDS: tuple[int, ...] = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                    31, 32, 33)
#: 768-entry PIL palette: index = Cityscapes id, colour = official colour (GTA5 label palette).
CITYSCAPES_PALETTE: list[int] = [
    c for i in range(256) for c in CITYSCAPES_LABELS.get(i, ("", (0, 0, 0)))[1]]

CLASS_NAMES: tuple[str, ...] = tuple(CITYSCAPES_LABELS[i][0] for i in TRAIN_CLASS_IDS)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(CITYSCAPES_LABELS[i][1] for i in TRAIN_CLASS_IDS)

# Cityscapes label id -> trainId for the 19 evaluated classes (ignoreInEval=False); all else ignore.
_CITYSCAPES_IDS = {cid: train_id for train_id, cid in enumerate(TRAIN_CLASS_IDS)}

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
