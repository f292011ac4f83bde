"""prepare_dataset on tiny raw fixtures: exact trainIds, layout, manifest, splits, bad input."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, name2label
from PIL import Image

from stvm.data.prepare import prepare_dataset
from stvm.errors import StvmError
from stvm.progress import ProgressBar, format_progress
from tests.fixtures import raw as F
from tests.data.test_labels import NTHU_13, SYNTHIA

W, H = F.SIZE


def official_cityscapes(raw: np.ndarray) -> np.ndarray:
    """Cityscapes id -> trainId from cityscapesScripts (ignoreInEval and unknown ids -> 255)."""
    table = np.full(256, 255, dtype=np.uint8)
    for i, lab in id2label.items():
        if i >= 0 and not lab.ignoreInEval:
            table[i] = lab.trainId
    return table[raw]


def documented_synthia(raw: np.ndarray) -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for sid, (name, _) in SYNTHIA.items():
        if name is not None:
            table[sid] = name2label[name].trainId
    return table[raw]


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def run(dataset, root, out, **kw):
    kw.setdefault("size", (W, H))
    kw.setdefault("workers", 1)
    kw.setdefault("show_progress", False)
    return prepare_dataset(dataset, root, out, **kw)


def test_gta5_reproduces_official_trainids(tmp_path):
    data = F.make_gta5(tmp_path / "raw", n=4)
    m = run("gta5", tmp_path / "raw", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "train", "val"]
    # without a holdout the val folders exist (fixed DVC outputs) but are empty
    assert [list((tmp_path / "out/val" / sub).iterdir()) for sub in ("images", "labels")] == [[], []]
    for stem in data.stems["all"]:
        lab = png(tmp_path / "out/train/labels" / f"{stem}.png")
        assert lab.dtype == np.uint8 and lab.ndim == 2
        np.testing.assert_array_equal(lab, official_cityscapes(data.raw[stem]))
        np.testing.assert_array_equal(
            png(tmp_path / "out/train/images" / f"{stem}.png"),
            png(tmp_path / "raw/images" / f"{stem}.png"),
        )
    assert m["splits"]["train"]["count"] == 4 and "val" not in m["splits"]
    assert m["remap"][34] == 255 and m["remap"][7] == 0 and len(m["remap"]) == 256


def test_cityscapes_splits_stems_and_trainids(tmp_path):
    data = F.make_cityscapes(tmp_path / "raw")
    m = run("cityscapes", tmp_path / "raw", tmp_path / "out")
    for split in ("train", "val"):
        stems = sorted(p.stem for p in (tmp_path / "out" / split / "labels").iterdir())
        assert stems == data.stems[split]
        assert sorted(p.stem for p in (tmp_path / "out" / split / "images").iterdir()) == stems
        for stem in stems:
            np.testing.assert_array_equal(
                png(tmp_path / "out" / split / "labels" / f"{stem}.png"),
                official_cityscapes(data.raw[stem]),
            )
    assert "berlin_000000_000019" not in json.dumps(m)  # the test split is ignored
    assert sorted(m["splits"]) == ["train", "val"]


def test_synthia_encoding_as_documented(tmp_path):
    data = F.make_synthia(tmp_path / "raw", n=3)
    run("synthia", tmp_path / "raw", tmp_path / "out")
    for stem in data.stems["all"]:
        np.testing.assert_array_equal(
            png(tmp_path / "out/train/labels" / f"{stem}.png"), documented_synthia(data.raw[stem])
        )


def test_nthu_train_unlabeled_and_13_class_labels(tmp_path):
    from stvm.data.labels import protocol_lut

    data = F.make_nthu(tmp_path / "raw", city="Tokyo", label_mode="P")
    m = run("nthu", tmp_path / "raw", tmp_path / "out", city="tokyo")
    assert m["city"] == "Tokyo"
    assert list((tmp_path / "out/train/labels").iterdir()) == []  # NTHU train is unlabelled
    assert sorted(p.stem for p in (tmp_path / "out/train/images").iterdir()) == data.stems["train"]
    assert m["splits"]["train"]["count"] == 3 and m["splits"]["val"]["count"] == 3
    assert m["splits"]["train"]["labelled"] is False and m["splits"]["train"]["histogram"] is None
    urma = np.full(256, 255, dtype=np.uint8)
    urma[list(NTHU_13)] = list(NTHU_13.values())
    for stem in data.stems["test"]:
        lab = png(tmp_path / "out/val/labels" / f"{stem}.png")
        np.testing.assert_array_equal(lab, official_cityscapes(data.raw[stem]))
        np.testing.assert_array_equal(protocol_lut(13)[lab], urma[data.raw[stem]])


@pytest.mark.parametrize(
    "eval_label_size,val_shape", [("full", (H, W)), ("train", (H // 2, W // 2))]
)
def test_sizes(tmp_path, eval_label_size, val_shape):
    F.make_cityscapes(tmp_path / "raw")
    m = run(
        "cityscapes",
        tmp_path / "raw",
        tmp_path / "out",
        size=(W // 2, H // 2),
        eval_label_size=eval_label_size,
    )
    out = tmp_path / "out"
    for p in [*out.glob("*/images/*.png")]:
        assert png(p).shape == (H // 2, W // 2, 3)
    for p in out.glob("train/labels/*.png"):
        assert png(p).shape == (H // 2, W // 2)
    for p in out.glob("val/labels/*.png"):
        assert png(p).shape == val_shape
    assert (
        m["splits"]["val"]["label_size"] == eval_label_size
        and m["splits"]["train"]["label_size"] == "train"
    )


def test_resize_is_nearest_for_labels_and_area_for_images(tmp_path):
    data = F.make_gta5(tmp_path / "raw", n=2, block=4)
    run("gta5", tmp_path / "raw", tmp_path / "out", size=(W // 2, H // 2))
    for stem in data.stems["all"]:
        np.testing.assert_array_equal(
            png(tmp_path / "out/train/labels" / f"{stem}.png"),
            official_cityscapes(data.raw[stem])[::2, ::2],
        )
        raw_rgb = png(tmp_path / "raw/images" / f"{stem}.png")
        np.testing.assert_array_equal(
            png(tmp_path / "out/train/images" / f"{stem}.png"), raw_rgb[::2, ::2]
        )


def test_manifest_histogram_and_sources(tmp_path):
    F.make_gta5(tmp_path / "raw", n=5)
    m = run("gta5", tmp_path / "raw", tmp_path / "out", holdout=2, size=(W // 2, H // 2))
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == m
    for split in ("train", "val"):
        counts = np.zeros(256, dtype=np.int64)
        for p in (tmp_path / "out" / split / "labels").iterdir():
            counts += np.bincount(png(p).ravel(), minlength=256)
        s = m["splits"][split]
        assert s["histogram"] == {
            id2label[i].name: int(counts[t])
            for i, t in ((i, lab.trainId) for i, lab in id2label.items())
            if 0 <= t < 19
        }
        assert s["ignore_pixels"] == int(counts[255]) and s["ignore_pixels"] > 0
        assert s["count"] == len(list((tmp_path / "out" / split / "images").iterdir()))
    raw_files = sorted(p for p in (tmp_path / "raw").rglob("*.png"))
    assert sorted(m["sources"]) == [p.relative_to(tmp_path / "raw").as_posix() for p in raw_files]
    for p in raw_files:
        assert (
            m["sources"][p.relative_to(tmp_path / "raw").as_posix()]
            == hashlib.sha256(p.read_bytes()).hexdigest()
        )
    combined = "".join(f"{k}\t{v}\n" for k, v in sorted(m["sources"].items()))
    assert m["sources_sha256"] == hashlib.sha256(combined.encode()).hexdigest()
    assert m["root"] == str(tmp_path / "raw") and m["size"] == [W // 2, H // 2]


def test_holdout_takes_the_last_sorted_stems(tmp_path):
    F.make_synthia(tmp_path / "raw", n=5)
    m = run("synthia", tmp_path / "raw", tmp_path / "out", holdout=2)
    assert sorted(p.stem for p in (tmp_path / "out/train/labels").iterdir()) == [
        "0000000",
        "0000001",
        "0000002",
    ]
    assert sorted(p.stem for p in (tmp_path / "out/val/images").iterdir()) == ["0000003", "0000004"]
    assert (m["splits"]["train"]["count"], m["splits"]["val"]["count"]) == (3, 2)


def test_parallel_output_equals_in_process_output(tmp_path):
    F.make_gta5(tmp_path / "raw", n=6, defect="size_mismatch")
    m1 = run("gta5", tmp_path / "raw", tmp_path / "a", holdout=2, size=(W // 2, H // 2), workers=1)
    m2 = run("gta5", tmp_path / "raw", tmp_path / "b", holdout=2, size=(W // 2, H // 2), workers=2)
    assert m1 == m2
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files == sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_mismatch_resize_and_skip(tmp_path):
    data = F.make_gta5(tmp_path / "raw", n=3, defect="size_mismatch")
    stem = data.bad.stem
    m = run("gta5", tmp_path / "raw", tmp_path / "resize")
    assert m["splits"]["train"]["resized_labels"] == {
        "count": 1,
        "items": [
            {"stem": stem, "reason": f"label size {W}x{H - 2} differs from image size {W}x{H}"}
        ],
    }
    lab = png(tmp_path / "resize/train/labels" / f"{stem}.png")
    assert lab.shape == (H, W)
    assert set(np.unique(lab)) <= set(np.unique(official_cityscapes(data.raw[stem])))
    m = run("gta5", tmp_path / "raw", tmp_path / "skip", mismatch="skip")
    assert (
        m["splits"]["train"]["count"] == 2
        and m["splits"]["train"]["skipped"]["items"][0]["stem"] == stem
    )
    assert not (tmp_path / "skip/train/images" / f"{stem}.png").exists()
    assert m["splits"]["train"]["resized_labels"]["count"] == 0


BAD_INPUTS = (
    [
        (F.make_gta5, "gta5", d)
        for d in (
            "missing_label",
            "extra_label",
            "size_mismatch",
            "corrupt_image",
            "corrupt_label",
            "bad_id",
            "rgb_label",
            "gray_image",
            "empty",
        )
    ]
    + [
        (F.make_synthia, "synthia", d)
        for d in ("gray_label", "rgba_label", "bad_id", "zero_image", "empty")
    ]
    + [
        (F.make_cityscapes, "cityscapes", d)
        for d in ("missing_label", "bad_id", "rgb_label", "empty")
    ]
    + [(F.make_nthu, "nthu", d) for d in ("extra_label", "corrupt_label", "bad_id", "empty")]
)


@pytest.mark.parametrize(
    "maker,dataset,defect", BAD_INPUTS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, maker, dataset, defect):
    data = maker(tmp_path / "raw", defect=defect)
    out = tmp_path / "work" / "prepared"
    city = "Rome" if dataset == "nthu" else None
    with pytest.raises(StvmError) as err:
        run(dataset, tmp_path / "raw", out, city=city, mismatch="error")
    assert str(err.value).startswith(f"{data.bad}: "), str(err.value)
    assert not (tmp_path / "work").exists()  # neither out, a temp dir, nor the parent we created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_worker_errors_come_back_with_the_same_message(tmp_path):
    F.make_gta5(tmp_path / "raw", n=4, defect="bad_id")
    (tmp_path / "work").mkdir()
    messages = []
    for workers in (1, 2):
        with pytest.raises(StvmError) as err:
            run("gta5", tmp_path / "raw", tmp_path / "work" / "out", workers=workers)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "outside the gta5 range 0..34: 35, 42" in messages[0]
    assert list((tmp_path / "work").iterdir()) == []


def test_missing_root(tmp_path):
    with pytest.raises(StvmError, match="dataset root not found") as err:
        run("gta5", tmp_path / "nope", tmp_path / "out")
    assert str(err.value).startswith(str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists()


def test_existing_output_rules(tmp_path):
    F.make_gta5(tmp_path / "raw", n=2)
    out = tmp_path / "out"
    (out / "train" / "images").mkdir(parents=True)  # an empty tree (left by DVC/Snakemake) is fine
    run("gta5", tmp_path / "raw", out)
    assert (out / "manifest.json").is_file()
    (out / "stale.txt").write_text("old")
    with pytest.raises(StvmError, match="not empty") as err:
        run("gta5", tmp_path / "raw", out)
    assert str(err.value).startswith(str(out)) and (out / "stale.txt").exists()
    with pytest.raises(StvmError, match="holds 1 file it did not write .stale.txt.") as err:
        run("gta5", tmp_path / "raw", out, overwrite=True)  # --overwrite replaces prepare's own files only
    assert str(err.value).startswith(str(out)) and (out / "stale.txt").read_text() == "old"
    (out / "stale.txt").unlink()
    (out / "train/images/00001.png").write_bytes(b"old")
    run("gta5", tmp_path / "raw", out, overwrite=True)
    assert (out / "train/images/00001.png").read_bytes() != b"old" and (out / "train/labels/00001.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no stray temp dirs


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"dataset": "kitti"}, "unknown dataset"),
        ({"dataset": "nthu"}, "nthu needs city"),
        ({"dataset": "nthu", "city": "Paris"}, "nthu needs city"),
        ({"city": "Rome"}, "city only applies"),
        ({"dataset": "cityscapes", "holdout": 3}, "holdout"),
        ({"holdout": 2}, "leaves no training pairs"),
        ({"size": (0, 10)}, "size must be"),
        ({"mismatch": "ignore"}, "mismatch must be"),
        ({"eval_label_size": "half"}, "eval_label_size"),
    ],
)
def test_bad_arguments(tmp_path, kw, message):
    F.make_gta5(tmp_path / "raw", n=2)
    dataset = kw.pop("dataset", "gta5")
    with pytest.raises(StvmError, match=message):
        run(dataset, tmp_path / "raw", tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_progress_lines_every_tenth_when_not_a_tty(tmp_path, capsys):
    F.make_gta5(tmp_path / "raw", n=3)
    run("gta5", tmp_path / "raw", tmp_path / "out", show_progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "ETA" in lines[0] and "/s" in lines[0] and lines[-1].split()[-2] == "in"
    stream = io.StringIO()
    bar = ProgressBar(1000, "x", stream=stream)
    for _ in range(1000):
        bar.update()
    assert len(stream.getvalue().splitlines()) == 10


def test_progress_redraws_in_place_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    with ProgressBar(4, "x", stream=stream, min_interval=0.0) as bar:
        for _ in range(4):
            bar.update()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert format_progress("d", 5, 10, 2.0) == "d: 5/10 (50%) 2.5/s ETA 0:00:02"
