"""The evaluate stage: input size from the prepared data (checked against the model), an output
folder that is replaced whole (never a new confusion matrix beside old metrics)."""

from __future__ import annotations

import json

import pytest

from stvm.config import EvaluateParams
from stvm.errors import StvmError
from stvm.evaluate import stage
from tests.fixtures.tiny import source_model_and_target, write_prepared


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model, _ = source_model_and_target(root)  # trained on 48x32 images
    images, labels = write_prepared(root / "val", n=2)
    return model, images, labels


def _run(tiny, out, **kw):
    model, images, labels = tiny
    return stage.evaluate_stage(EvaluateParams(), model_path=kw.pop("model", model), images=kw.pop("images", images),
                                labels=kw.pop("labels", labels), out=out, device="cpu", show_progress=False, **kw)


def test_input_size_comes_from_the_prepared_images_and_matches_the_model(tiny, tmp_path):
    m = _run(tiny, tmp_path / "e")
    assert m["evaluation"]["input_size"] == [48, 32]
    assert m["evaluation"]["input_size_from"].startswith("prepared images")
    assert json.loads((tmp_path / "e/metrics.json").read_text())["miou"] == m["miou"]


def test_a_size_mismatch_is_an_error_unless_overridden(tiny, tmp_path):
    images, labels = write_prepared(tmp_path / "big", n=2, size=(96, 64))
    with pytest.raises(StvmError, match="images are 96x64 but .* was trained at 48x32"):
        _run(tiny, tmp_path / "e", images=images, labels=labels)
    assert not (tmp_path / "e").exists()
    m = _run(tiny, tmp_path / "e", images=images, labels=labels, input_size=(48, 32))
    assert m["evaluation"]["input_size"] == [48, 32] and m["evaluation"]["input_size_from"] == "override"


def test_a_kill_between_the_two_writes_leaves_the_old_pair(tiny, tmp_path, monkeypatch):
    out = tmp_path / "e"
    _run(tiny, out, input_size=(48, 32))
    old = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(old) == {"metrics.json", "scores.json", "eval_info.json", "confusion.json", "curve.json", "index.json",
                        *(f"{s}_{k}.png" for s in ("00000", "00001") for k in ("prediction", "confidence"))}
    real, calls = stage.write_json, []

    def write_json(path, obj):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after the confusion matrix, before the rest
        real(path, obj)
    monkeypatch.setattr(stage, "write_json", write_json)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, out, input_size=(40, 24))  # another size: other numbers
    assert calls == ["confusion.json", "scores.json"]
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == old
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temporary folder left


def test_a_folder_that_is_not_an_evaluate_output_is_not_replaced(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StvmError, match="give it a folder of its own"):
        _run(tiny, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
