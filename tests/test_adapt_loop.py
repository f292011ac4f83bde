import csv
import re
from pathlib import Path

import pytest
import torch
import yaml

from stvm.adapt.loop import VARIANTS, adapt
from stvm.io import load_checkpoint
from stvm.models.weights import load_model_checkpoint
from tests.test_train import same_weights
from tests.tiny import adapt_params, source_model_and_target

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return source_model_and_target(tmp_path_factory.mktemp("adapt"))


def _adapt(cfg, source, out, variant="STvM", **kw):
    return adapt(cfg, variant=variant, source_model=source[0], target_images=source[1], out=out, seed=0,
                 device="cpu", show_progress=False, **kw)


@pytest.mark.parametrize("bn", [{}, {"bn_init": "target", "bn_mode": "frozen"}], ids=["bn-source-train", "bn-target-frozen"])
def test_stvm_resume_equals_uninterrupted(source, tmp_path, bn):
    cfg = adapt_params(**bn)
    _adapt(cfg, source, tmp_path / "full")
    assert _adapt(cfg, source, tmp_path / "res", stop_after=3) == {"stopped_at": 3}
    state = load_checkpoint(tmp_path / "res/ckpt/last.pt")
    assert {"student", "teacher", "opt", "metric", "opt_metric", "thresholds", "buffers"} <= set(state["nets"])
    _adapt(cfg, source, tmp_path / "res")
    a, meta_a = load_model_checkpoint(tmp_path / "full/model.pt")
    b, meta_b = load_model_checkpoint(tmp_path / "res/model.pt")
    assert same_weights(a, b)
    for k, v in meta_a["metric_head"].items():
        assert torch.equal(v, meta_b["metric_head"][k]), k
    full = load_checkpoint(tmp_path / "full/ckpt/last.pt")["nets"]
    res = load_checkpoint(tmp_path / "res/ckpt/last.pt")["nets"]
    for part in ("thresholds", "buffers"):
        for k, v in full[part].items():
            assert torch.equal(v, res[part][k]), (part, k)


def _rows(out):
    with (out / "plots/adapt.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("variant", [k for k, v in VARIANTS.items() if v.trains])
def test_variant_switches(source, tmp_path, variant):
    v = VARIANTS[variant]
    out = tmp_path / variant
    _adapt(adapt_params(iterations=4), source, out, variant=variant)
    rows = _rows(out)
    assert (float(rows[-1]["loss_metric"]) > 0) == v.metric
    assert (float(rows[-1]["reliability"]) < 1.0) == v.metric  # w == 1 without MGS
    assert (float(rows[-1]["buffer_fill"]) > 0) == v.mocm
    state = load_checkpoint(out / "ckpt/last.pt")["nets"]
    assert ("metric" in state) == v.metric and ("buffers" in state) == v.mocm
    src, _ = load_model_checkpoint(source[0])
    teacher = src.__class__  # noqa: F841
    student_sd, teacher_sd = state["student"], state["teacher"]
    same = all(torch.equal(student_sd[k], teacher_sd[k]) for k in student_sd if isinstance(student_sd[k], torch.Tensor))
    assert same != v.mean_teacher  # without MT the teacher *is* the student


def _bn_stats(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "running_" in k}


def test_adabn_variant_has_target_statistics_and_source_weights(source, tmp_path):
    metrics = _adapt(adapt_params(), source, tmp_path / "a", variant="AdaBN")
    assert metrics["iterations"] == 0 and "init source statistics" not in metrics["choices"]["batchnorm"]
    assert metrics["choices"]["iterations"].startswith("0 ") and metrics["wall_seconds"] > 0
    src, _ = load_model_checkpoint(source[0])
    ada, meta = load_model_checkpoint(tmp_path / "a/model.pt")
    assert meta["variant"] == "AdaBN" and len(_rows(tmp_path / "a")) == 0  # header only
    s_sd, a_sd = src.state_dict(), ada.state_dict()
    assert all(torch.equal(s_sd[k], a_sd[k]) for k in s_sd if "running_" not in k and "num_batches" not in k)
    assert any(not torch.equal(s_sd[k], a_sd[k]) for k in _bn_stats(src))
    # the statistics are those of the target images: re-estimating them again changes nothing
    again = tmp_path / "b"
    _adapt(adapt_params(), (tmp_path / "a/model.pt", source[1]), again, variant="AdaBN")
    b, _ = load_model_checkpoint(again / "model.pt")
    for k, v in _bn_stats(ada).items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-5), k


def test_frozen_bn_keeps_the_target_statistics_while_training(source, tmp_path):
    cfg = adapt_params(iterations=4, bn_init="target", bn_mode="frozen")
    _adapt(adapt_params(), source, tmp_path / "ada", variant="AdaBN")
    _adapt(cfg, source, tmp_path / "st", variant="ST_MT")
    ada, _ = load_model_checkpoint(tmp_path / "ada/model.pt")
    st, _ = load_model_checkpoint(tmp_path / "st/model.pt")
    assert not same_weights(ada, st)  # it trained ...
    for k, v in _bn_stats(ada).items():  # ... with the statistics fixed
        assert torch.equal(v, st.state_dict()[k]), k
    _adapt(adapt_params(iterations=4, bn_init="target"), source, tmp_path / "tr", variant="ST_MT")
    tr, _ = load_model_checkpoint(tmp_path / "tr/model.pt")
    assert any(not torch.equal(v, tr.state_dict()[k]) for k, v in _bn_stats(ada).items())  # train mode moves them


def _adapt_stage(dvc: dict) -> dict:
    return dvc["stages"]["adapt"]


def test_adapt_is_source_free_in_dvc_yaml():
    stage = _adapt_stage(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    data_deps = [d for d in stage["deps"] if not d.startswith("stvm/")]
    assert sorted(data_deps) == sorted([
        "results/models/Source/seed${item.seed}/model.pt", "data/prepared/target/train/images"])
    assert "labels" not in stage["cmd"] and "prepared/source" not in stage["cmd"]


def test_adapt_is_source_free_in_snakefile():
    text = (ROOT / "workflow/rules/adapt.smk").read_text()
    block = text[text.index("rule adapt:"):]
    inputs = block[block.index("input:"): block.index("output:")]
    paths = re.findall(r'"([^"]+)"', inputs)
    assert sorted(paths) == sorted(["results/models/Source/seed{seed}/model.pt", "data/prepared/target/train/images"])

