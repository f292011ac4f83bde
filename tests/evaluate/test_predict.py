"""`stvm predict`, and the user's path: a folder of JPEGs + a source model -> prepare, adapt, predict."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from stvm.cli import main
from stvm.data.images import normalize
from stvm.evaluate.inference import predict_logits
from stvm.models.deeplab import build_model
from stvm.models.weights import save_model_checkpoint
from tests.fixtures.frames import jpeg_frames, write_frames

def random_model(path: Path, arch: str = "deeplabv2_tiny", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_model_checkpoint(build_model(arch, 19), path, protocol=19, stage="test", init="random")
    return path


def tiny_params(path: Path) -> Path:
    """A params file with the tiny adaptation schedule of tests/fixtures/tiny.py (CPU seconds)."""
    adapt = dict(iterations=4, crop=32, log_every=2, ckpt_every=2, ema_interval=2, ema_lambda=0.5, buffer_size=3,
                 n_mocm=2, samples_per_class=8, n_f=16)
    p = {"common": {"device": "cpu"}, "prepare": {"width": 48, "height": 32, "workers": 1}, "adapt": adapt,
         "evaluate": {"batch_size": 4}}
    path.write_text(yaml.safe_dump(p))
    return path


def run(capsys, *argv: str, err: list[str] | None = None) -> dict:
    """``stvm *argv`` in-process; its JSON line (stderr appended to ``err`` when given)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    if err is not None:
        err.append(captured.err)
    last = captured.out.strip().splitlines()[-1]
    return json.loads(last) if last.startswith("{") else {"line": last}  # train/adapt end in a short line


def test_folder_of_jpegs_to_adapted_predictions_at_original_size(tmp_path, capsys):
    files = jpeg_frames(tmp_path / "frames", 40)
    params = str(tiny_params(tmp_path / "params.yaml"))
    source = random_model(tmp_path / "source.pt")
    out = run(capsys, "prepare", "--quiet", "--params", params, "--dataset", "folder", "--root",
              str(tmp_path / "frames"), "--out", str(tmp_path / "prepared"))
    assert out["counts"] == {"train": 40}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(capsys, "adapt", "--quiet", "--params", params, "--variant", "STvM", "--source-model", str(source),
            "--target-images", str(tmp_path / "prepared/train/images"), "--out", str(tmp_path / "adapted"))
    err: list[str] = []
    summary = run(capsys, "predict", "--params", params, "--model", str(tmp_path / "adapted/model.pt"), "--images",
                  str(tmp_path / "frames"), "--out", str(tmp_path / "pred"), "--maps", err=err)
    assert summary == {**summary, "images": 40, "predicted": 40, "skipped": 0}
    assert "predict: 40/40 (100%)" in err[0] and "/s" in err[0]  # progress with rate on stderr
    for f in files:
        stem = f"{f.parent.name}__{f.stem}"
        h, w = cv2.imread(str(f)).shape[:2]
        pred = cv2.imread(str(tmp_path / "pred/pred" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.shape == (h, w) and pred.dtype == np.uint8 and pred.max() <= 18
        for kind in ("color", "overlay"):
            assert cv2.imread(str(tmp_path / "pred" / kind / f"{stem}.png")).shape == (h, w, 3)
        for kind in ("confidence", "reliability"):  # an STvM checkpoint carries its teacher and M
            assert cv2.imread(str(tmp_path / "pred" / kind / f"{stem}.png"), cv2.IMREAD_UNCHANGED).shape == (h, w)
    record = json.loads((tmp_path / "pred/predict.json").read_text())
    assert record["finished"] and record["teacher"] and record["metric_head"]
    assert record["run"]["maps"] == ["confidence", "reliability"]


def test_prediction_is_the_evaluate_inference_and_reruns_skip_finished_images(tmp_path, capsys):
    files = jpeg_frames(tmp_path / "frames", 5)
    model = random_model(tmp_path / "m.pt")
    args = ["predict", "--quiet", "--model", str(model), "--images", str(tmp_path / "frames"), "--out",
            str(tmp_path / "pred"), "--scales", "0.75", "1.0", "--flip", "--batch-size", "1"]
    assert run(capsys, *args)["predicted"] == 5
    net = build_model("deeplabv2_tiny", 19)
    net.load_state_dict(torch.load(model, weights_only=True)["model"])
    net.eval()
    img = cv2.cvtColor(cv2.imread(str(files[3])), cv2.COLOR_BGR2RGB)
    with torch.inference_mode():
        prob = predict_logits(net, normalize(img)[None], img.shape[:2], (0.75, 1.0), True)
    written = cv2.imread(str(tmp_path / "pred/pred/drive0__frame_0003.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, prob[0].argmax(0).numpy().astype(np.uint8))
    (tmp_path / "pred/color/drive0__frame_0003.png").unlink()
    before = (tmp_path / "pred/pred/drive1__frame_0001.png").stat().st_mtime_ns
    again = run(capsys, *args)
    assert (again["predicted"], again["skipped"]) == (1, 4)
    assert (tmp_path / "pred/color/drive0__frame_0003.png").exists()
    assert (tmp_path / "pred/pred/drive1__frame_0001.png").stat().st_mtime_ns == before


def test_batches_of_equal_sizes_give_the_unbatched_predictions(tmp_path, capsys):
    jpeg_frames(tmp_path / "frames", 8)  # two images of each of four sizes
    model = random_model(tmp_path / "m.pt")
    for batch in ("1", "4"):
        run(capsys, "predict", "--quiet", "--model", str(model), "--images", str(tmp_path / "frames"), "--out",
            str(tmp_path / f"b{batch}"), "--batch-size", batch)
    for p in sorted((tmp_path / "b1/pred").iterdir()):
        a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "b4/pred" / p.name), cv2.IMREAD_UNCHANGED)
        assert (a == b).mean() > 0.999, p.name


def one_line_error(capsys, code: int, *names: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    model = random_model(tmp_path / "m.pt")
    (tmp_path / "empty").mkdir()
    base = ["predict", "--quiet", "--model", str(model), "--out"]
    one_line_error(capsys, main([*base, str(tmp_path / "p0"), "--images", str(tmp_path / "empty")]),
                   str(tmp_path / "empty"), "no images found")
    files = write_frames(tmp_path / "frames", n=3)
    files[1].write_bytes(files[1].read_bytes()[:200])
    one_line_error(capsys, main([*base, str(tmp_path / "p1"), "--images", str(tmp_path / "frames")]),
                   str(files[1]), "corrupt")
    files[1].unlink()
    assert main([*base, str(tmp_path / "p1"), "--images", str(tmp_path / "frames")]) == 0
    other = random_model(tmp_path / "other.pt", seed=1)
    code = main(["predict", "--quiet", "--model", str(other), "--out", str(tmp_path / "p1"), "--images",
                 str(tmp_path / "frames")])
    one_line_error(capsys, code, str(tmp_path / "p1/predict.json"), "model")
    code = main(["predict", "--quiet", "--model", str(other), "--out", str(tmp_path / "p1"), "--images",
                 str(tmp_path / "frames"), "--overwrite"])
    assert code == 0
    assert json.loads((tmp_path / "p1/predict.json").read_text())["model"] == str(other)


@pytest.mark.parametrize("arch", ["deeplabv3_r18"])
def test_deeplabv3_checkpoints_predict_too(tmp_path, capsys, arch):
    jpeg_frames(tmp_path / "frames", 2)
    model = random_model(tmp_path / "m.pt", arch)
    out = run(capsys, "predict", "--quiet", "--model", str(model), "--images", str(tmp_path / "frames"), "--out",
              str(tmp_path / "pred"), "--maps")
    assert out["predicted"] == 2
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "color", "confidence", "overlay", "pred", "predict.json"]


def test_predict_says_once_the_training_size_and_what_it_does_with_other_sizes(tmp_path, capsys):
    jpeg_frames(tmp_path / "frames", 4)  # 40x24, 36x30, 50x20, 44x28
    torch.manual_seed(0)
    trained = tmp_path / "trained.pt"
    save_model_checkpoint(build_model("deeplabv2_tiny", 19), trained, protocol=19, stage="test", init="random",
                          input_size=[40, 24])
    imported = random_model(tmp_path / "imported.pt")  # records no training size
    base = ["predict", "--set", "common.threads=1", "--device", "cpu", "--images", str(tmp_path / "frames")]
    assert main([*base, "--quiet", "--model", str(trained), "--out", str(tmp_path / "p1")]) == 0
    assert capsys.readouterr().err.splitlines() == [  # a warning: printed even with --quiet
        f"stvm predict: warning: {trained} was trained on 40x24 frames; 3 of 4 frames here are another size "
        "(36x30, 44x28, 50x20) and are segmented at their own size, not resized (objects at another scale than in "
        "training may segment worse; `stvm prepare` resizes frames to 40x24)"]
    record = json.loads((tmp_path / "p1/predict.json").read_text())
    assert record["training_size"] == [40, 24] and record["other_size_frames"] == 3
    assert main([*base, "--model", str(imported), "--out", str(tmp_path / "p2")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"stvm predict: {imported} records no training size (imported?); each frame is segmented at " \
                     "its own size"
    assert sum("training size" in line for line in err) == 1  # once, then the progress
    assert main([*base, "--quiet", "--model", str(imported), "--out", str(tmp_path / "p3")]) == 0
    assert capsys.readouterr().err == ""  # a note, silenced by --quiet
