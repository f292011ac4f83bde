"""The second bad-input battery (issue 25), through the CLI: silent wrong results, lost files,
tracebacks, accepted nonsense and misleading messages, one test per class of input. Every refusal is
one line naming the file (or the params key), exit status 2, and leaves every file as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stvm.cli import main
from stvm.models.deeplab import build_model
from stvm.models.weights import save_model_checkpoint
from tests.fixtures import raw as F
from tests.fixtures.tiny import write_prepared
from tests.test_bad_inputs import fails, leftovers, params_file


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A random-init deeplabv2_r18 stvm checkpoint (19 classes)."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.manual_seed(0)
    save_model_checkpoint(build_model("deeplabv2_r18", 19), path, protocol=19, stage="test", init="random")
    return path


def frames(root: Path, n: int = 3, labels: Path | None = None) -> list[Path]:
    """``n`` random 40x24 PNG frames (and trainId label PNGs in ``labels``)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / f"f{i}.png"), rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
        if labels is not None:
            labels.mkdir(exist_ok=True)
            cv2.imwrite(str(labels / f"f{i}.png"), rng.choice([0, 1, 2], (24, 40)).astype(np.uint8))
    return sorted(root.iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predict(model: Path, images: Path, out: Path, *extra: object) -> list[object]:
    return ["predict", "--quiet", "--device", "cpu", "--model", model, "--images", images, "--out", out, *extra]


def run_ok(capsys, *args: object) -> dict:
    """Run the CLI in-process; assert exit 0 and return its JSON line."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


# --- 1, 12: every number is range-checked in one place (params files and options alike) ---------


@pytest.mark.parametrize("case", ["params scales 0", "--scales -1", "--scales 0", "--batch-size 0", "--holdout -1"])
def test_numbers_out_of_range_are_refused_in_params_and_options_alike(model, tmp_path, capsys, case):
    images = tmp_path / "frames"
    frames(images)
    if case.startswith("params"):
        p = params_file(tmp_path, "evaluate: {scales: [0.0]}\n")
        fails(capsys, "params", "--params", p, names=p, says="evaluate.scales[0]: expected a value in [0.1, 4.0]")
        return
    if case == "--holdout -1":
        args = ["prepare", "--quiet", "--dataset", "gta5", "--root", tmp_path, "--out", tmp_path / "out", "--holdout", "-1"]
        key = "prepare.source_holdout"
    else:
        flag, value = case.split()
        args, key = predict(model, images, tmp_path / "out", flag, value), f"evaluate.{flag[2:].replace('-', '_')}"
    line = fails(capsys, *args, says=f"argument {case.split()[0]}: {key}: expected a value in")
    assert "got " + case.split()[1] in line.replace(".0", "")
    assert not (tmp_path / "out").exists()


# --- 2, 15: a network with non-finite weights is refused when read, naming the file --------------


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "adapt", "import"])
def test_a_model_with_nan_weights_is_refused_when_read(model, tmp_path, capsys, command):
    obj = torch.load(model, weights_only=True)
    key = next(k for k, v in obj["model"].items() if v.is_floating_point())
    obj["model"][key] = torch.full_like(obj["model"][key], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(obj, bad)
    images, labels = write_prepared(tmp_path / "val", n=2, size=(48, 32))
    p = params_file(tmp_path, "common: {device: cpu}\nadapt: {iterations: 2, crop: 32, n_f: 16}\n")
    out = tmp_path / "out"
    args = {"evaluate": ["evaluate", "--params", p, "--quiet", "--model", bad, "--images", images, "--labels", labels,
                         "--out", out],
            "predict": predict(bad, images, out),
            "export": ["export", "--model", bad, "--out", out / "m.ts"],
            "adapt": ["adapt", "--params", p, "--quiet", "--variant", "ST", "--source-model", bad, "--target-images",
                      images, "--out", out],
            "import": ["import", "--source", "stvm", "--pth", bad, "--out", out / "m.pt"]}[command]
    line = fails(capsys, *args, names=bad, says=f"weight tensors hold NaN/inf (first: {key})")
    assert "diverged" not in line and "learning rate" not in line
    # nothing written (adapt caches its inputs' digests, ckpt/inputs.json, before it reads the model)
    assert not [p for p in leftovers(out) if p.is_file() and p.name != "inputs.json"]


# --- 3: a rerun skips an input only when its bytes are unchanged ---------------------------------


def test_predict_rerun_predicts_a_frame_whose_pixels_changed_under_the_same_name(model, tmp_path, capsys):
    images = tmp_path / "frames"
    changed = frames(images, n=3)[1]
    first = run_ok(capsys, *predict(model, images, tmp_path / "out"))
    assert (first["predicted"], first["skipped"]) == (3, 0)
    st = changed.stat()
    img = cv2.imread(str(changed))
    cv2.imwrite(str(changed), 255 - img)  # other pixels, same name and size
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its mtime put back
    again = run_ok(capsys, *predict(model, images, tmp_path / "out"))
    assert (again["predicted"], again["skipped"]) == (1, 2)
    fresh = run_ok(capsys, *predict(model, images, tmp_path / "fresh"))
    assert fresh["predicted"] == 3
    for kind in ("pred", "color", "overlay"):
        for name in ("f0.png", "f1.png", "f2.png"):
            a = cv2.imread(str(tmp_path / "out" / kind / name), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / "fresh" / kind / name), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(a, b), (kind, name)


# --- 4, 6: an output never overlaps its inputs ---------------------------------------------------


@pytest.mark.parametrize("command", ["prepare", "export", "import", "predict", "evaluate"])
def test_an_output_that_overlaps_its_inputs_is_refused(model, tmp_path, capsys, command):
    root = tmp_path / "frames"
    frames(root)
    m = tmp_path / "m.pt"
    m.write_bytes(model.read_bytes())
    images, labels = write_prepared(tmp_path / "val", n=2, size=(48, 32))
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\ncommon: {device: cpu}\n")
    args, out, given = {
        "prepare": (["prepare", "--params", p, "--quiet", "--dataset", "folder", "--root", root, "--out",
                     root / "prepared"], root / "prepared", root),
        "export": (["export", "--model", m, "--out", m], m, m),
        "import": (["import", "--source", "stvm", "--pth", m, "--out", m], m, m),
        "predict": (predict(m, root, root / "pred"), root / "pred", root),
        "evaluate": (["evaluate", "--params", p, "--quiet", "--model", m, "--images", images, "--labels", labels,
                      "--out", images / "eval"], images / "eval", images),
    }[command]
    before = snapshot(tmp_path)
    how = "is" if out == given else "lies inside"
    fails(capsys, *args, names=out, says=f"output {how} the input {given}")
    assert snapshot(tmp_path) == before


# --- 5: a key given twice in a params file -------------------------------------------------------


@pytest.mark.parametrize("text, key, line", [
    ("train_source:\n  lr: 0.1\nadapt:\n  lr: 0.1\ntrain_source:\n  lr: 0.2\n", "'train_source'", 5),
    ("adapt:\n  lr: 0.1\n  n_f: 16\n  lr: 0.2\n", "'lr'", 4),
    ("evaluate: {flip: true, scales: [1.0], flip: false}\n", "'flip'", 1),
])
def test_a_params_key_given_twice_is_refused(tmp_path, capsys, text, key, line):
    p = params_file(tmp_path, text)
    fails(capsys, "params", "--params", p, names=p, says=f"key {key} given twice in one mapping (line {line})")


# --- 7, 8: a folder holding files the command did not write is never replaced -------------------


def _metrics_tree(root: Path) -> Path:
    path = root / "eval/Source/seed0/metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"miou": 12.5}')
    return root / "eval"


@pytest.mark.parametrize("command", ["report", "prepare --overwrite", "evaluate", "summary", "predict --overwrite"])
def test_a_folder_with_files_the_command_did_not_write_is_kept(model, tmp_path, capsys, command):
    out = tmp_path / "out"
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\ncommon: {device: cpu}\n")
    images, labels = write_prepared(tmp_path / "val", n=2, size=(48, 32))
    raw = F.make_gta5(tmp_path / "raw", n=2).root
    prepare = ["prepare", "--params", p, "--quiet", "--dataset", "gta5", "--root", raw, "--out", out]
    evaluate = ["evaluate", "--params", p, "--quiet", "--model", model, "--images", images, "--labels", labels,
                "--out", out]
    args, first, mine = {
        "report": (["report", "--params", p, "--eval", _metrics_tree(tmp_path), "--models", tmp_path / "models",
                    "--prepared", tmp_path / "prepared", "--out", out], None, "thesis.tex"),
        "prepare --overwrite": ([*prepare, "--overwrite"], prepare, "thesis.tex"),
        "evaluate": (evaluate, evaluate, "thesis.tex"),
        "summary": (["summary", "--eval", _metrics_tree(tmp_path), "--out", out], None, "notes.txt"),
        "predict --overwrite": ([*predict(model, images, out), "--overwrite"], predict(model, images, out),
                                "pred/notes.txt"),
    }[command]
    if first is not None:
        run_ok(capsys, *first)  # the command's own earlier output is there too
    out.mkdir(exist_ok=True)
    (out / mine).write_text("mine, not the command's\n")
    before = snapshot(out)
    line = fails(capsys, *args, names=out, says=f"holds 1 file it did not write ({mine})")
    assert snapshot(out) == before and "Traceback" not in line


# --- 9, 14: a checkpoint that is not plain tensors: one line, never an unsafe suggestion ---------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("content, says", [
    (b"this is a text file\n", "not a PyTorch checkpoint, or a corrupt one (IndexError"),
    (b"0", "not a PyTorch checkpoint, or a corrupt one (UnpicklingError"),
    ("code", "not a plain-tensor checkpoint (Trying to load unsupported GLOBAL"),
])
def test_a_checkpoint_that_is_not_plain_tensors_is_one_line_without_an_unsafe_hint(tmp_path, capsys, content, says):
    bad = tmp_path / "model.pt"
    if content == "code":
        torch.save({"model": _RunsCode()}, bad)
        says += f" {os.system.__module__}.system"
    else:
        bad.write_bytes(content)
    for args in (["export", "--model", bad, "--out", tmp_path / "m.ts"],
                 ["import", "--source", "stvm", "--pth", bad, "--out", tmp_path / "m2.pt"]):
        line = fails(capsys, *args, names=bad, says=says)
        assert "weights_only" not in line and "False" not in line and "likely succeed" not in line
        assert content != "code" or "refused for safety" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# --- 10: a frame name that is not UTF-8 ---------------------------------------------------------


@pytest.mark.parametrize("dataset", ["folder", "gta5"])
def test_a_frame_name_that_is_not_utf8_is_one_line(tmp_path, capsys, dataset):
    if dataset == "folder":
        root = tmp_path / "frames"
        frames(root, n=2)
        bad = os.fsencode(root) + b"/\xff\xfe.png"
        os.rename(root / "f1.png", bad)
    else:
        root = F.make_gta5(tmp_path / "raw", n=2).root
        for sub in ("images", "labels"):
            os.rename(root / sub / "00001.png", os.fsencode(root / sub) + b"/\xff.png")
        bad = os.fsencode(root / "images") + b"/\xff.png"
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\n")
    fails(capsys, "prepare", "--params", p, "--quiet", "--dataset", dataset, "--root", root, "--out", tmp_path / "out",
          names=bad.decode("utf-8", "backslashreplace"), says="file name is not valid UTF-8")
    assert not (tmp_path / "out").exists()


# --- 11: symlink loops -----------------------------------------------------------------------------


def test_symlink_loops_with_labels_are_handled_as_without(tmp_path, capsys):
    root, labels = tmp_path / "frames", tmp_path / "labels"
    frames(root, n=2, labels=labels)
    (root / "x.png").symlink_to("y.png")
    (root / "y.png").symlink_to("x.png")  # a loop among the frames: not a file, as without labels
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\n")
    base = ["prepare", "--params", p, "--quiet", "--dataset", "folder", "--root", root, "--label-encoding", "trainids"]
    without = run_ok(capsys, *base, "--out", tmp_path / "a")
    with_labels = run_ok(capsys, *base, "--labels", labels, "--out", tmp_path / "b")
    assert without["counts"] == {"train": 2} and with_labels["counts"] == {"train": 2, "val": 2}
    (tmp_path / "loop").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop")  # the label folder itself a loop
    fails(capsys, *base, "--labels", tmp_path / "loop", "--out", tmp_path / "c", names=tmp_path / "loop",
          says="symlink loop")
    assert not (tmp_path / "c").exists()


# --- 13: a crop larger than the frames -------------------------------------------------------------


@pytest.mark.parametrize("stage", ["train_source", "adapt"])
def test_a_crop_larger_than_the_frames_is_refused(model, tmp_path, capsys, stage):
    images, labels = write_prepared(tmp_path / "data", n=2, size=(64, 32))
    p = params_file(tmp_path, "common: {device: cpu}\n"
                    "train_source: {arch: deeplabv2_tiny, init: random, iterations: 2, batch_size: 2, crop: 512}\n"
                    "adapt: {iterations: 2, crop: 512, n_f: 16, samples_per_class: 8, buffer_size: 3}\n")
    out = tmp_path / "run"
    args = (["train_source", "--params", p, "--quiet", "--images", images, "--labels", labels, "--out", out]
            if stage == "train_source" else
            ["adapt", "--params", p, "--quiet", "--variant", "ST", "--source-model", model, "--target-images", images,
             "--out", out])
    line = fails(capsys, *args, names=p, says=f"{stage}.crop: 512 is larger than the frames in {images} (64x32)")
    assert line.startswith(f"stvm {stage}: error: {p}: ") and "at most 32" in line
    assert not out.exists()
