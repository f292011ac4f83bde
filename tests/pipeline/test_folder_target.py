"""A user's own frames as the target domain, through `dvc repro` with only params.yaml changed."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from tests.pipeline.conftest import run
from tests.fixtures.frames import jpeg_frames

pytestmark = pytest.mark.pipeline


def set_target(repo, **target) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["target"] = {"city": "", **target}
    params["variants"] = ["STvM"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_repro_adapts_a_folder_of_jpegs_then_scores_it_once_labels_are_given(repo_copy):
    files = jpeg_frames(repo_copy / "data/raw/mine", 40)
    set_target(repo_copy, dataset="folder", root="data/raw/mine")
    run(["dvc", "repro", "--quiet", "adapt"], repo_copy)
    manifest = json.loads((repo_copy / "data/prepared/target/manifest.json").read_text())
    assert manifest["dataset"] == "folder" and manifest["splits"]["train"]["count"] == 40
    model = repo_copy / "results/models/STvM/seed0/model.pt"
    run(["python", "-m", "stvm", "predict", "--quiet", "--model", str(model), "--images", "data/raw/mine",
         "--out", "results/predict"], repo_copy)
    for f in files:
        pred = cv2.imread(str(repo_copy / "results/predict/pred" / f"{f.parent.name}__{f.stem}.png"),
                          cv2.IMREAD_UNCHANGED)
        assert pred.shape == cv2.imread(str(f)).shape[:2]
    adapt_md5 = yaml.safe_load((repo_copy / "dvc.lock").read_text())["stages"]["adapt@STvM-0"]["outs"][0]["md5"]

    # labels (trainIds) inside the root: prepare reruns, the train images (and so the adapted model)
    # stay the same, and the full chain now scores the model on them
    rng = np.random.default_rng(0)
    for f in files:
        lab = repo_copy / "data/raw/mine/labels" / f.relative_to(repo_copy / "data/raw/mine").with_suffix(".png")
        lab.parent.mkdir(parents=True, exist_ok=True)
        h, w = cv2.imread(str(f)).shape[:2]
        cv2.imwrite(str(lab), rng.choice([0, 2, 10, 255], (h, w)).astype(np.uint8))
    set_target(repo_copy, dataset="folder", root="data/raw/mine", labels="data/raw/mine/labels",
               label_encoding="trainids")
    run(["dvc", "repro", "--quiet"], repo_copy)
    manifest = json.loads((repo_copy / "data/prepared/target/manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 40 and manifest["splits"]["val"]["count"] == 40
    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())["stages"]
    assert lock["adapt@STvM-0"]["outs"][0]["md5"] == adapt_md5
    metrics = json.loads((repo_copy / "results/eval/STvM/seed0/metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 100.0
    assert (repo_copy / "results/report/report.html").is_file()
