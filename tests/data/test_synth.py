"""Tests for the built-in synthetic benchmark (stvm.data.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stvm.data import synth
from stvm.data.labels import TRAIN_CLASS_IDS
from stvm.data.synth import generate_frame, save_preview, write_synth
from stvm.data.synth_style import (
    GAME_PALETTE,
    TARGET_STYLE,
    DomainStyle,
    domain_styles,
    interpolate_style,
)
from stvm.errors import StvmError

W, H = 96, 48
SIZES = dict(n_source=3, n_target_train=3, n_target_val=2, width=W, height=H)


def _official_colours() -> dict[int, tuple[int, int, int]]:
    """Cityscapes id -> colour from cityscapesScripts itself (independent of synth's table)."""
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    return {lab.id: tuple(lab.color) for lab in labels.labels if lab.id >= 0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("w") / "synth"
    return out, write_synth(out, seed=3, **SIZES)


def test_exact_gta5_and_cityscapes_layouts(written: tuple[Path, dict]) -> None:
    out, summary = written
    files = set(_files(out))
    expected = {"synth.json"}
    expected |= {f"source/{d}/{i:05d}.png" for d in ("images", "labels") for i in (1, 2, 3)}
    for split, n, cities in (("train", 3, synth.TRAIN_CITIES), ("val", 2, synth.VAL_CITIES)):
        stems = {p.name.removesuffix("_leftImg8bit.png")
                 for p in (out / "target/leftImg8bit" / split).glob("*/*.png")}
        assert len(stems) == n
        for stem in stems:
            city, seq, frame = stem.split("_")
            assert city in cities and seq == "000000" and len(frame) == 6 and frame.isdigit()
            expected.add(f"target/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
            expected.add(f"target/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
    assert files == expected
    assert [p.name for p in out.parent.iterdir()] == ["synth"]  # no temp dir left behind
    assert json.loads((out / "synth.json").read_text()) == summary
    assert summary["counts"] == {"source": 3, "target_train": 3, "target_val": 2}
    assert (summary["seed"], summary["width"], summary["height"]) == (3, W, H)


def test_pixel_formats_and_palette(written: tuple[Path, dict]) -> None:
    out, summary = written
    colours = _official_colours()
    total = 0
    for img_path in sorted(out.rglob("*.png")):
        im = Image.open(img_path)
        assert im.size == (W, H)
        if "images" in img_path.parts or "leftImg8bit" in img_path.parts:
            assert im.mode == "RGB"
            continue
        if "labels" in img_path.parts:  # GTA5: palettized, palette = Cityscapes colours
            assert im.mode == "P"
            pal = np.array(im.getpalette()[: 34 * 3]).reshape(34, 3)
            assert all(tuple(pal[i]) == c for i, c in colours.items())
        else:
            assert im.mode == "L"
        ids = np.asarray(im)
        assert set(np.unique(ids)) <= set(colours)
        total += ids.size
    assert total == 8 * W * H
    assert sum(sum(h.values()) for h in summary["class_pixels"].values()) == total


def test_deterministic_and_worker_independent(tmp_path: Path) -> None:
    a = write_synth(tmp_path / "a", seed=7, workers=1, **SIZES)
    b = write_synth(tmp_path / "b", seed=7, workers=2, **SIZES)
    assert a == b
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    img1, lab1 = generate_frame(7, "target", "train", 0, W, H, TARGET_STYLE)
    img2, lab2 = generate_frame(7, "target", "train", 0, W, H, TARGET_STYLE)
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2)
    img3, lab3 = generate_frame(8, "target", "train", 0, W, H, TARGET_STYLE)
    assert not np.array_equal(lab1, lab3) and not np.array_equal(img1, img3)
    _, lab4 = generate_frame(7, "target", "val", 0, W, H, TARGET_STYLE)
    assert not np.array_equal(lab1, lab4)


def test_many_classes_present() -> None:
    seen: set[int] = set()
    for i in range(10):
        for domain, style in (("source", DomainStyle()), ("target", TARGET_STYLE)):
            seen |= set(np.unique(generate_frame(0, domain, "train", i, 128, 64, style)[1]))
    present = seen & set(TRAIN_CLASS_IDS)
    assert len(present) >= 12, sorted(present)
    assert {7, 8, 11, 17, 21, 23, 24, 26} <= present  # the street essentials


def test_label_matches_drawn_pixels() -> None:
    """Source images are flat: every sky pixel is the sky colour, every road pixel road or lane."""
    for i in range(4):
        img, lab = generate_frame(1, "source", "train", i, 128, 64, DomainStyle())
        sky = img[lab == 23]
        assert len(sky) and (sky == GAME_PALETTE["sky"]).all()
        road = img[lab == 7]
        ok = (road == GAME_PALETTE["road"]).all(1) | (road == GAME_PALETTE["lane"]).all(1)
        assert ok.all()
        assert not (img[lab != 23] == GAME_PALETTE["sky"]).all(1).any()
        timg, tlab = generate_frame(1, "target", "train", i, 128, 64, TARGET_STYLE)
        tsky = timg[tlab == 23].astype(float).mean(0)
        if (tlab == 23).sum() > 50:  # still the blue, bright family in the real look
            assert tsky[2] > tsky[0] and tsky.mean() > 100


def _class_means(style: DomainStyle, domain: str, n: int = 16) -> dict[int, np.ndarray]:
    sums: dict[int, np.ndarray] = {}
    for i in range(n):
        img, lab = generate_frame(11, domain, "train", i, 128, 64, style)
        for c in (7, 8, 11, 21, 23):
            px = img[lab == c].astype(float)
            if len(px):
                acc = sums.setdefault(c, np.zeros(4))
                acc[:3] += px.sum(0)
                acc[3] += len(px)
    return {c: s[:3] / s[3] for c, s in sums.items()}


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_shift_changes_appearance(shift: float) -> None:
    src_style, tgt_style = domain_styles(shift)
    src, tgt = _class_means(src_style, "source"), _class_means(tgt_style, "target")
    dist = {c: float(np.linalg.norm(src[c] - tgt[c])) for c in src}
    if shift == 0.0:
        assert tgt_style == src_style
        # only instance-colour noise is left (buildings vary most)
        assert max(dist.values()) < 15.0 and np.mean(list(dist.values())) < 6.0, dist
    else:  # every big class moves, most of them a lot
        assert min(dist.values()) > 10.0 and np.mean(list(dist.values())) > 30.0, dist


def test_interpolate_style_endpoints() -> None:
    s, t = DomainStyle(), TARGET_STYLE
    assert interpolate_style(s, t, 0.0) == s
    assert interpolate_style(s, t, 1.0) == t
    mid = interpolate_style(s, t, 0.5)
    assert mid.road_width == pytest.approx((s.road_width + t.road_width) / 2)
    assert mid.palette["sky"] == pytest.approx(
        tuple((a + b) / 2 for a, b in zip(s.palette["sky"], t.palette["sky"])))


def test_refuses_existing_output_and_bad_args(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("keep")
    with pytest.raises(StvmError, match="already exists"):
        write_synth(busy, seed=0, **SIZES)
    assert (busy / "x.txt").read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_synth(empty, seed=0, **SIZES)["counts"]["source"] == 3
    for bad in (dict(shift=-1.0), dict(workers=0), dict(seed=-1), dict(width=8)):
        kw = {**SIZES, "seed": 0, **bad}
        with pytest.raises(StvmError):
            write_synth(tmp_path / "bad", **kw)
        assert not (tmp_path / "bad").exists()


def test_save_preview(written: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = written
    png = tmp_path / "prev.png"
    save_preview(out, png, n=2)
    im = Image.open(png)
    assert im.mode == "RGB" and im.size[0] == 4 * W and im.size[1] > 2 * H
    with pytest.raises(StvmError):
        save_preview(tmp_path / "nothing", tmp_path / "p.png")
