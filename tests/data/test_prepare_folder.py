"""`prepare --dataset folder`: a user's own images (nested PNG/JPEG, any size), optional labels, and
what prepare does with frames of another aspect ratio (stretch with a warning, crop, pad)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stvm.cli import main
from stvm.data.convert import PAD_RGB, fit_aspect
from stvm.data.prepare import prepare_dataset
from stvm.data.readers import tree_stems
from stvm.errors import StvmError
from tests.fixtures.frames import write_frames


def cli(*args: str) -> int:
    return main(["prepare", "--quiet", "--params", str(Path(__file__).parents[2] / "params.yaml"), *args])


def test_tree_stems_are_flat_unique_and_skip_hidden_files(tmp_path):
    for rel in ("a/b/x.jpg", "a/b/x.png", "a/y.JPEG", "z.png", ".hidden/q.png", "a/.w.jpg", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    stems = tree_stems(tmp_path, (".png", ".jpg", ".jpeg"))
    assert list(stems) == ["a__b__x_jpg", "a__b__x_png", "a__y", "z"]
    assert stems["a__y"] == tmp_path / "a/y.JPEG"


def test_tree_stems_clash_names_both_files(tmp_path):
    for rel in ("a/b.png", "a__b.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert list(tree_stems(tmp_path, (".png", ".jpg"))) == ["a__b_jpg", "a__b_png"]
    (tmp_path / "a__b_png.png").write_bytes(b"")  # its plain stem is the suffixed one of a/b.png
    with pytest.raises(StvmError, match="clashes with"):
        tree_stems(tmp_path, (".png", ".jpg"))


def test_unlabeled_folder_goes_to_train_at_the_prepared_size(tmp_path):
    files = write_frames(tmp_path / "frames")
    m = prepare_dataset("folder", tmp_path / "frames", tmp_path / "out", size=(32, 16), workers=1,
                        show_progress=False)
    assert m["splits"]["train"]["count"] == 6 and "val" not in m["splits"]
    assert m["splits"]["train"]["raw_image_sizes"] == {"40x24": 2, "36x30": 2, "50x20": 2}
    written = sorted(p.name for p in (tmp_path / "out/train/images").iterdir())
    assert written == sorted(f"{f.parent.relative_to(tmp_path / 'frames').as_posix().replace('/', '__')}__{f.stem}.png"
                             for f in files)
    img = cv2.imread(str(tmp_path / "out/train/images" / written[0]))
    assert img.shape == (16, 32, 3)
    assert set(m["sources"]) == {f.relative_to(tmp_path / "frames").as_posix() for f in files}
    assert not any((tmp_path / "out/val/images").iterdir())


@pytest.mark.parametrize("encoding", ["cityscapes", "trainids"])
def test_labels_inside_root_become_a_full_size_val_split(tmp_path, encoding):
    root = tmp_path / "frames"
    write_frames(root, labels=root / "labels", encoding=encoding)
    m = prepare_dataset("folder", root, tmp_path / "out", size=(32, 16), labels=root / "labels",
                        label_encoding=encoding, workers=1, show_progress=False)
    assert m["splits"]["train"]["count"] == 6 and m["splits"]["val"]["count"] == 6  # labels not listed as images
    assert m["encoding"] == encoding and m["label_encoding"] == encoding
    lab = cv2.imread(str(tmp_path / "out/val/labels/cam1__f001.png"), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (30, 36)  # full resolution (eval_label_size full)
    expected = {0, 1, 2, 13} if encoding == "cityscapes" else {0, 1, 2, 13, 255}
    assert set(np.unique(lab).tolist()) <= expected and len(np.unique(lab)) >= 3
    assert not any((tmp_path / "out/train/labels").iterdir())


def test_labels_outside_root_are_recorded_apart(tmp_path):
    write_frames(tmp_path / "frames", n=3, labels=tmp_path / "gt")
    m = prepare_dataset("folder", tmp_path / "frames", tmp_path / "out", size=(32, 16), labels=tmp_path / "gt",
                        workers=1, show_progress=False)
    assert sum(k.startswith(":labels/") for k in m["sources"]) == 3


def check_fails(capsys, out: Path, code: int, *names: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err
    assert not out.exists()
    return err


def test_no_images_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty/sub").mkdir(parents=True)
    (tmp_path / "empty/sub/readme.txt").write_text("x")
    code = cli("--dataset", "folder", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    check_fails(capsys, tmp_path / "out", code, str(tmp_path / "empty"), "no images found")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_jpeg_names_the_file(tmp_path, capsys, damage):
    files = write_frames(tmp_path / "frames", n=4)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) * 6 // 10] if damage == "truncated" else b"not a jpeg at all")
    code = cli("--dataset", "folder", "--root", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
               "--workers", "1")
    check_fails(capsys, tmp_path / "out", code, str(files[2]), "corrupt")


def test_labels_that_do_not_pair_name_the_file(tmp_path, capsys):
    root = tmp_path / "frames"
    files = write_frames(root, n=4, labels=tmp_path / "gt")
    (tmp_path / "gt/cam1/f001.png").unlink()
    code = cli("--dataset", "folder", "--root", str(root), "--labels", str(tmp_path / "gt"), "--out",
               str(tmp_path / "out"))
    check_fails(capsys, tmp_path / "out", code, str(files[1]), "image has no label", "gt/cam1/f001.png")
    (tmp_path / "gt/cam1/f001.png").write_bytes((tmp_path / "gt/cam1/f003.png").read_bytes())
    (tmp_path / "gt/cam1/extra.png").write_bytes((tmp_path / "gt/cam1/f003.png").read_bytes())
    code = cli("--dataset", "folder", "--root", str(root), "--labels", str(tmp_path / "gt"), "--out",
               str(tmp_path / "out"))
    check_fails(capsys, tmp_path / "out", code, "gt/cam1/extra.png", "label has no image")


def test_trainid_labels_out_of_range_fail(tmp_path, capsys):
    root = tmp_path / "frames"
    write_frames(root, n=2, labels=tmp_path / "gt", encoding="trainids")
    bad = tmp_path / "gt/cam2/day/f000.png"
    cv2.imwrite(str(bad), np.full((24, 40), 19, np.uint8))
    code = cli("--dataset", "folder", "--root", str(root), "--labels", str(tmp_path / "gt"), "--label-encoding",
               "trainids", "--out", str(tmp_path / "out"), "--workers", "1")
    check_fails(capsys, tmp_path / "out", code, str(bad), "0..18 or 255: 19")


def test_labels_only_apply_to_the_folder_dataset(tmp_path):
    with pytest.raises(StvmError, match="labels only apply to the folder dataset"):
        prepare_dataset("gta5", tmp_path, tmp_path / "out", size=(32, 16), labels=tmp_path)


def test_role_takes_labels_from_params(tmp_path, capsys):
    root = tmp_path / "frames"
    write_frames(root, n=2, labels=root / "gt", encoding="trainids")
    params = tmp_path / "params.yaml"
    params.write_text(
        "prepare: {width: 32, height: 16, workers: 1}\n"
        f"data:\n  target: {{dataset: folder, root: {root}, labels: {root / 'gt'}, label_encoding: trainids}}\n"
    )
    code = main(["prepare", "--quiet", "--params", str(params), "--dataset", "folder", "--root", str(root),
                 "--out", str(tmp_path / "out"), "--role", "target"])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"] == {"train": 2, "val": 2}
    assert json.loads((tmp_path / "out/manifest.json").read_text())["label_encoding"] == "trainids"


# --- frames of another aspect ratio: stretched with a warning, or cropped or padded (issue 26, item 6) -----

def test_fit_aspect_crops_and_pads_at_the_frames_own_resolution():
    wide = np.arange(6 * 12).reshape(6, 12)  # 2:1 into a square
    assert np.array_equal(fit_aspect(wide, (4, 4), "crop", 0), wide[:, 3:9])
    padded = fit_aspect(wide, (4, 4), "pad", -1)
    assert padded.shape == (12, 12) and np.array_equal(padded[3:9], wide)
    assert (padded[:3] == -1).all() and (padded[9:] == -1).all()
    tall = np.arange(12 * 6 * 3).reshape(12, 6, 3)  # 1:2 into 2:1
    assert np.array_equal(fit_aspect(tall, (8, 4), "crop", 0), tall[4:7])
    padded = fit_aspect(tall, (8, 4), "pad", (1, 2, 3))
    assert padded.shape == (12, 24, 3) and np.array_equal(padded[:, 9:15], tall) and (padded[:, :9] == (1, 2, 3)).all()
    assert fit_aspect(wide, (4, 4), "stretch", 0) is wide
    near = np.zeros((50, 100))
    assert fit_aspect(near, (201, 100), "crop", 0) is near  # within rounding (0.5%): left as it is


def _params(tmp_path: Path, width: int, height: int) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(f"prepare: {{width: {width}, height: {height}, workers: 1}}\n")
    return str(path)


def test_stretched_frames_are_counted_in_one_warning_even_when_quiet(tmp_path, capsys):
    write_frames(tmp_path / "frames")  # 2 of 40x24, 4 of other shapes
    code = main(["prepare", "--quiet", "--params", _params(tmp_path, 40, 24), "--dataset", "folder", "--root",
                 str(tmp_path / "frames"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.splitlines() == ["stvm prepare: warning: 4 of 6 train frames have another aspect ratio than 40x24 and "
                                "were stretched to it (--aspect crop or pad, or prepare.aspect, keeps the ratio)"]
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["aspect"] == "stretch" and manifest["splits"]["train"]["other_aspect"] == 4


def _striped(root: Path) -> None:
    """One 60x20 PNG frame in three vertical stripes (red, green, blue) and its trainId label (0, 1, 2)."""
    img, lab = np.zeros((20, 60, 3), np.uint8), np.zeros((20, 60), np.uint8)
    for i, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        img[:, 20 * i: 20 * (i + 1)], lab[:, 20 * i: 20 * (i + 1)] = colour, i
    (root / "labels").mkdir(parents=True)
    cv2.imwrite(str(root / "f.png"), img[..., ::-1])
    cv2.imwrite(str(root / "labels/f.png"), lab)


@pytest.mark.parametrize("aspect", ["crop", "pad"])
def test_crop_and_pad_keep_the_ratio_of_image_and_labels_alike(tmp_path, capsys, aspect):
    _striped(tmp_path / "raw")
    args = ["prepare", "--params", _params(tmp_path, 10, 10), "--dataset", "folder", "--root", str(tmp_path / "raw"),
            "--labels", str(tmp_path / "raw/labels"), "--label-encoding", "trainids", "--aspect", aspect]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("stvm prepare: 1 of 1 train, 1 of 1 val frames have another aspect ratio than 10x10: "
                              + ("centre-cropped" if aspect == "crop" else "padded"))
    image = cv2.imread(str(tmp_path / "out/train/images/f.png"))[..., ::-1]
    label = cv2.imread(str(tmp_path / "out/val/labels/f.png"), cv2.IMREAD_UNCHANGED)  # full resolution
    if aspect == "crop":  # the middle 20x20: green, class 1
        assert (image == (0, 255, 0)).all() and label.shape == (20, 20) and (label == 1).all()
    else:  # 60x60: the frame in rows 20..39, ImageNet-mean image and ignored label above and below
        assert label.shape == (60, 60) and (label[:20] == 255).all() and (label[40:] == 255).all()
        assert np.array_equal(label[20:40], cv2.imread(str(tmp_path / "raw/labels/f.png"), cv2.IMREAD_UNCHANGED))
        assert (image[0] == PAD_RGB).all() and (image[-1] == PAD_RGB).all()
    assert main([*args, "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    assert capsys.readouterr().err == ""  # a crop or pad is a note, not a warning
