import csv
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from stvm.adapt.loop import adapt
from stvm.adapt.step import adapt_step, build_nets
from stvm.data.images import IMAGENET_MEAN, IMAGENET_STD
from stvm.models.weights import load_model_checkpoint
from stvm.training import load_checkpoint
from stvm.variants import VARIANTS
from tests.fixtures.tiny import adapt_params, same_weights, source_model_and_target

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return source_model_and_target(tmp_path_factory.mktemp("adapt"))


def _adapt(cfg, source, out, variant="STvM", **kw):
    return adapt(cfg, variant=variant, source_model=source[0], target_images=source[1], out=out, seed=0,
                 device="cpu", show_progress=False, **kw)


@pytest.mark.parametrize("bn", [{"bn_init": "source", "bn_mode": "train"}, {}], ids=["bn-source-train", "bn-target-frozen"])
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
    # tau_mocm far above any distance: every candidate patch is accepted, so whether the buffers fill
    # is the variant's switch, not this CPU's rounding of distances near 0.8
    _adapt(adapt_params(iterations=4, tau_mocm=1e9), source, out, variant=variant)
    rows = _rows(out)
    probe = v.trains_metric(adapt_params().metric_probe)  # ST_MT trains an unused M (Table VII's ST_MT row)
    assert probe == (v.metric or variant == "ST_MT")
    assert (float(rows[-1]["loss_metric"]) > 0) == probe
    assert (float(rows[-1]["metric_samples"]) > 0) == probe
    assert (float(rows[-1]["reliability"]) < 1.0) == v.metric  # w == 1 without MGS
    assert (float(rows[-1]["buffer_fill"]) > 0) == v.mocm
    assert (max(float(r["mocm_coverage"]) for r in rows) > 0) == v.mocm
    assert float(rows[-1]["teacher_drift"]) > 0  # the pseudo-labeller has left the source weights
    state = load_checkpoint(out / "ckpt/last.pt")["nets"]
    assert ("metric" in state) == probe and ("buffers" in state) == v.mocm
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
    numbers = json.loads((tmp_path / "a/adapt_metrics.json").read_text())  # dvc metrics: numbers only
    assert numbers == {"iterations": 0, "wall_seconds": metrics["wall_seconds"]}
    info = json.loads((tmp_path / "a/adapt_info.json").read_text())
    assert info["choices"] == metrics["choices"] and info["threads"] == torch.get_num_threads()
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
    _adapt(adapt_params(iterations=4, bn_init="target", bn_mode="train"), source, tmp_path / "tr", variant="ST_MT")
    tr, _ = load_model_checkpoint(tmp_path / "tr/model.pt")
    assert any(not torch.equal(v, tr.state_dict()[k]) for k, v in _bn_stats(ada).items())  # train mode moves them


def _adapt_stage(dvc: dict) -> dict:
    return dvc["stages"]["adapt"]


def test_adapt_is_source_free_in_dvc_yaml():
    stage = _adapt_stage(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    data_deps = [d for d in stage["deps"] if not d.startswith("stvm/")]
    assert sorted(data_deps) == sorted([
        "results/models/Source/seed${source_seed}/model.pt", "data/prepared/target/train/images"])
    assert "labels" not in stage["cmd"] and "prepared/source" not in stage["cmd"]


def test_adapt_is_source_free_in_snakefile():
    text = (ROOT / "workflow/rules/adapt.smk").read_text()
    block = text[text.index("rule adapt:"):]
    inputs = block[block.index("input:"): block.index("output:")]
    data = [line for line in inputs.splitlines() if "code=stage_code(" not in line]  # code: test_deps.py
    paths = re.findall(r'"([^"]+)"', "\n".join(data))
    assert "source_model=SOURCE_MODEL" in inputs and 'SOURCE_MODEL = f"results/models/Source/seed{config' in (
        ROOT / "workflow/rules/common.smk").read_text()
    assert sorted(paths) == ["data/prepared/target/train/images"]



# --- wiring: each variant keeps its parts (each test fails when the loop drops one) -------------

def _nets(source, variant="STvM", **kw):
    cfg = adapt_params(**kw)
    nets, _ = build_nets(cfg, VARIANTS[variant], source[0], torch.device("cpu"), 0, source[1])
    return cfg, nets


def _crops(n=2, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _record_inputs(module, store):
    """Keep every input ``module`` is called with (a forward pre-hook)."""
    return module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach().clone()))


@pytest.mark.parametrize("variant", ["ST", "ST_Aug", "ST_MT", "STvM"])
def test_student_input_is_augmented_and_teacher_input_clean(source, variant):
    cfg, nets = _nets(source, variant)
    img = _crops()
    clean = normalize_batch(img)
    seen_teacher, seen_student = [], []
    h1 = _record_inputs(nets.teacher.backbone, seen_teacher)
    if nets.teacher is not nets.student:
        h2 = _record_inputs(nets.student, seen_student)
    adapt_step(cfg, VARIANTS[variant], nets, img, 0, 0)
    h1.remove()
    if nets.teacher is nets.student:  # no mean teacher: first backbone call labels, second trains
        seen_student = seen_teacher[1:2]
    else:
        h2.remove()
    assert torch.equal(seen_teacher[0], clean)  # the teacher always sees the clean crop
    assert torch.equal(seen_student[0], clean) != VARIANTS[variant].augment


def _pin_thresholds(nets) -> None:
    nets.thresholds.tau.zero_()
    nets.thresholds.seen.fill_(True)


def test_metric_sees_at_least_the_configured_samples(source):
    # thresholds pinned at 0 (momentum 1 keeps them): every pixel is eligible, so the classes M samples
    # are the teacher's predicted classes, not the ones whose confidence this CPU rounds above tau
    cfg, nets = _nets(source, samples_per_class=8, threshold_momentum=1.0)
    _pin_thresholds(nets)
    img = _crops()
    logs = adapt_step(cfg, VARIANTS["STvM_Raw"], nets, img, 0, 0)
    with torch.no_grad():  # the teacher is unchanged after one step (EMA every 2)
        conf, pred = nets.teacher.classify(nets.teacher.features(normalize_batch(img))).softmax(1).max(1)
    present = pred[conf > nets.thresholds.tau[pred]].unique().numel()  # classes with eligible pixels
    assert present >= 1 and float(logs["metric_samples"]) == 8 * present
    cfg_old, nets_old = _nets(source, samples_per_class=8, metric_sampling="min_count", threshold_momentum=1.0)
    _pin_thresholds(nets_old)
    logs_old = adapt_step(cfg_old, VARIANTS["STvM_Raw"], nets_old, _crops(), 0, 0)
    assert float(logs_old["metric_samples"]) <= float(logs["metric_samples"])


@pytest.mark.parametrize("reading", ["smoothing", "refresh"])
def test_ema_moves_the_teacher_towards_the_student(source, reading):
    cfg, nets = _nets(source, "ST_MT", ema_interval=1, ema_lambda=0.1, ema_reading=reading)
    before = [q.detach().clone() for q in nets.teacher.parameters()]
    adapt_step(cfg, VARIANTS["ST_MT"], nets, _crops(), 0, 0)
    after = list(nets.teacher.parameters())
    student = list(nets.student.parameters())
    w = 0.1 if reading == "smoothing" else 0.9
    moved = [not torch.equal(a, b) for a, b in zip(after, before, strict=True)]
    assert any(moved)
    for a, b, s_ in zip(after, before, student, strict=True):
        assert torch.allclose(a, (1 - w) * b + w * s_, atol=1e-6)


def test_mocm_pastes_from_earlier_batches_only(source):
    cfg, nets = _nets(source, tau_mocm=10.0, n_mocm=3)  # every candidate is accepted
    v = VARIANTS["STvM"]
    first = adapt_step(cfg, v, nets, _crops(seed=1), 0, 0)
    assert float(first["mocm_coverage"]) == 0.0 and float(first["buffer_fill"]) > 0  # pushed after its paste
    second = adapt_step(cfg, v, nets, _crops(seed=2), 1, 0)
    assert float(second["mocm_coverage"]) > 0
    cfg_b, nets_b = _nets(source, tau_mocm=10.0, n_mocm=3, mocm_push="before_paste")
    assert float(adapt_step(cfg_b, v, nets_b, _crops(seed=1), 0, 0)["mocm_coverage"]) > 0  # its own patches


def test_metric_weights_come_from_m_in_eval_mode(source):
    """A DeepLabV3-style M (dropout, BN) gives the same reliability for the same input twice."""
    from stvm.adapt.losses import reliability
    from stvm.adapt.step import metric_step
    from stvm.adapt.metric import ClassThresholds, MetricHead, distance_to_prediction
    from stvm.models.deeplab import build_head

    cfg, nets = _nets(source, lr_metric=0.0)
    nets.metric = MetricHead(build_head("deeplabv3_r18", nets.student.feature_channels, 16), 19, 16)
    nets.opt_metric = torch.optim.Adam(nets.metric.parameters(), lr=0.0)
    feats = torch.randn(2, nets.student.feature_channels, 4, 4)
    low = torch.randn(2, 19, 4, 4)
    pseudo = low.argmax(1)
    with torch.no_grad():
        nets.metric.train()  # (this forward also moves M's running statistics)
        noisy = distance_to_prediction(nets.metric.distances(nets.metric(feats)), pseudo)
        nets.metric.eval()
        d = distance_to_prediction(nets.metric.distances(nets.metric(feats)), pseudo)
        nets.metric.train()
    assert not torch.equal(noisy, d)  # dropout and batch statistics: train mode is noisy
    nets.thresholds = ClassThresholds(19)
    w, d_out, _ = metric_step(cfg, nets, feats, low, pseudo, torch.Generator().manual_seed(0))
    assert torch.equal(d_out, d) and torch.equal(w, reliability(d, cfg.alpha, cfg.beta))
    assert nets.metric.training  # M itself is trained in train mode


def normalize_batch(img_u8):
    return (img_u8.float() / 255.0 - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)


@pytest.mark.parametrize("order", ["before_paste", "after_paste"])
def test_photometric_noise_before_or_after_the_pastes(source, order):
    cfg, nets = _nets(source, tau_mocm=10.0, n_mocm=3, mocm_noise=order)
    v = VARIANTS["STvM"]
    adapt_step(cfg, v, nets, _crops(seed=1), 0, 0)  # fills the buffers
    mixed, seen = [], []
    paste = nets.buffers.paste
    nets.buffers.paste = lambda *a: mixed.append(paste(*a)) or mixed[-1]
    hook = _record_inputs(nets.student, seen)
    adapt_step(cfg, v, nets, _crops(seed=2), 1, 0)
    hook.remove()
    image, _, _, pasted = mixed[0]
    assert pasted.any()
    student_at_patches = seen[0].permute(0, 2, 3, 1)[pasted]
    clean_patches = ((image - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)).permute(0, 2, 3, 1)[pasted]
    if order == "before_paste":  # III-D: noise first, so the pasted pixels reach the student clean
        assert torch.allclose(student_at_patches, clean_patches, atol=1e-5)
    else:
        assert not torch.allclose(student_at_patches, clean_patches, atol=1e-3)


def test_two_runs_are_bit_identical(source, tmp_path):
    cfg = adapt_params(iterations=4, tau_mocm=10.0)  # every patch accepted: pushes and pastes happen
    for name in ("a", "b"):
        _adapt(cfg, source, tmp_path / name)
    a, meta_a = load_model_checkpoint(tmp_path / "a/model.pt")
    b, meta_b = load_model_checkpoint(tmp_path / "b/model.pt")
    assert same_weights(a, b)
    assert all(torch.equal(v, meta_b["metric_head"][k]) for k, v in meta_a["metric_head"].items())
    bufs = [load_checkpoint(tmp_path / f"{n}/ckpt/last.pt")["nets"]["buffers"] for n in ("a", "b")]
    assert int(bufs[0]["count"].sum()) > 0
    for k in ("image_store", "mask_store", "rel_store"):  # the last slot is the never-read scratch slot
        assert torch.equal(bufs[0][k][:-1], bufs[1][k][:-1]), k
