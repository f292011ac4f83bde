"""Tests for the named parts of the synthetic shift (stvm.data.synth_style) and what each changes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stvm.config import SHIFT_PART_NAMES, ShiftParts
from stvm.data.synth import generate_frame
from stvm.data.synth_style import (
    CLASS_PALETTE,
    LEGACY_PARTS,
    MATERIALS,
    PART_FIELDS,
    DomainStyle,
    domain_styles,
)

W, H = 128, 64
FRAMES = range(4)
OFF = {name: 0.0 for name in PART_FIELDS}
# Cityscapes ids of the things the shape part resizes (pole, light, sign, person .. bicycle).
OBJECT_IDS = {17, 19, 20, 24, 25, 26, 27, 28, 32, 33}
_MAT_ID = {name: cid for name, cid, *_ in MATERIALS}


def _frames(parts: dict[str, float]) -> list[tuple[np.ndarray, np.ndarray]]:
    _src, tgt = domain_styles(1.0, parts=parts)
    return [generate_frame(7, "target", "train", i, W, H, tgt) for i in FRAMES]


def _alone(part: str) -> dict[str, float]:
    return {**OFF, part: 1.0}


@pytest.fixture(scope="module")
def no_shift() -> list[tuple[np.ndarray, np.ndarray]]:
    return _frames(OFF)


def test_every_style_field_belongs_to_exactly_one_part() -> None:
    owned = [name for names in PART_FIELDS.values() for name in names]
    assert sorted(owned) == sorted(f.name for f in dataclasses.fields(DomainStyle))
    assert len(owned) == len(set(owned))


def test_config_parts_are_the_style_parts_and_default_to_the_legacy_generator() -> None:
    assert set(SHIFT_PART_NAMES) == set(PART_FIELDS)
    assert dataclasses.asdict(ShiftParts()) == LEGACY_PARTS
    assert domain_styles(1.3) == domain_styles(1.3, parts=LEGACY_PARTS)


def test_unknown_or_missing_part_is_refused() -> None:
    with pytest.raises(ValueError, match="parts must name"):
        domain_styles(1.0, parts={"appearance": 1.0})


def test_all_parts_off_is_the_source_style() -> None:
    src, tgt = domain_styles(2.0, parts=OFF)
    assert tgt == src


@pytest.mark.parametrize("part", sorted(PART_FIELDS))
def test_each_part_is_deterministic_and_changes_the_frames(part: str, no_shift) -> None:
    a, b = _frames(_alone(part)), _frames(_alone(part))
    for (ia, la), (ib, lb) in zip(a, b):
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert any(not np.array_equal(img, ref) for (img, _), (ref, _) in zip(a, no_shift))


@pytest.mark.parametrize("part", ["appearance", "class_appearance", "texture", "sensor"])
def test_appearance_parts_never_move_a_label(part: str, no_shift) -> None:
    for (_, lab), (_, ref) in zip(_frames(_alone(part)), no_shift):
        assert np.array_equal(lab, ref)


@pytest.mark.parametrize("part, materials", [
    ("class_appearance", set(CLASS_PALETTE)),
    ("texture", {"building", "wall", "sidewalk", "curb", "road", "parking", "canopy", "terrain"}),
])
def test_class_parts_change_only_their_classes(part: str, materials: set[str], no_shift) -> None:
    allowed = {_MAT_ID[m] for m in materials}
    changed_ids: set[int] = set()
    for (img, lab), (ref, _) in zip(_frames(_alone(part)), no_shift):
        diff = (img != ref).any(-1)
        changed_ids |= set(np.unique(lab[diff]).tolist())
    assert changed_ids and changed_ids <= allowed


def test_shape_moves_only_object_pixels(no_shift) -> None:
    moved = 0
    for (_, lab), (_, ref) in zip(_frames(_alone("shape")), no_shift):
        diff = lab != ref
        moved += int(diff.sum())
        either = np.isin(lab[diff], list(OBJECT_IDS)) | np.isin(ref[diff], list(OBJECT_IDS))
        assert either.all()
    assert moved > 0


def test_layout_moves_the_scene(no_shift) -> None:
    assert any(not np.array_equal(lab, ref) for (_, lab), (_, ref) in zip(_frames(_alone("layout")), no_shift))


def test_object_size_grows_small_things_in_both_domains_and_leaves_vehicles() -> None:
    def pixels(size: float, domain: str, ids: list[int]) -> int:
        src, tgt = domain_styles(1.0, parts=_alone("shape"))
        style = src if domain == "source" else tgt
        labs = [generate_frame(7, domain, "train", i, W, H, style, size)[1] for i in FRAMES]
        return int(sum(np.isin(lab, ids).sum() for lab in labs))

    for domain in ("source", "target"):
        assert pixels(1.6, domain, [19, 20, 24, 25, 33]) > 1.5 * pixels(1.0, domain, [19, 20, 24, 25, 33])
        assert pixels(1.6, domain, [26, 27, 28]) <= pixels(1.0, domain, [26, 27, 28])  # only occluded more


def test_only_part_flag_writes_one_part(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("synth: {n_source: 1, n_target_train: 1, n_target_val: 1, width: 64, height: 32, workers: 1,"
                      " parts: {texture: 0.5, shape: 1.0}}\n")
    out = tmp_path / "raw"
    subprocess.run([sys.executable, "-m", "stvm", "synth", "--params", str(params), "--out", str(out),
                    "--only-part", "texture"], check=True, capture_output=True)
    parts = json.loads((out / "synth.json").read_text())["parts"]
    assert parts == {**OFF, "texture": 0.5}


@pytest.mark.parametrize("kw, message", [({"object_size": 0.0}, "object_size must be"),
                                         ({"parts": {"appearance": 1.0}}, "parts must name")])
def test_write_synth_refuses_bad_size_or_parts_in_one_line(tmp_path: Path, kw: dict, message: str) -> None:
    from stvm.data.synth import write_synth
    from stvm.errors import StvmError

    with pytest.raises(StvmError, match=message):
        write_synth(tmp_path / "o", n_source=1, n_target_train=1, n_target_val=1, width=64, height=32, seed=0, **kw)
    assert not (tmp_path / "o").exists()
