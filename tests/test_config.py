import typing
from pathlib import Path

import pytest
import yaml

from stvm.config import Params, load_params, params_from_dict, params_table
from stvm.errors import StvmError

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.common.protocol in (19, 16, 13)


def test_defaults_follow_the_paper():
    a = Params().adapt
    assert (a.lr, a.lr_head, a.lr_metric) == (2.5e-4, 2.5e-3, 3e-4)
    assert (a.ema_interval, a.ema_lambda, a.n_f, a.temperature, a.q_m) == (100, 1e-3, 128, 0.25, 0.2)
    assert (a.alpha, a.beta, a.tau_mocm, a.n_mocm, a.buffer_size) == (2.0, 0.6, 0.8, 10, 50)


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"adapt": {"ema_lambda": 2}}, "adapt.ema_lambda"),
        ({"adapt": {"ema_lamda": 0.1}}, "adapt.ema_lamda"),
        ({"common": {"seed": "zero"}}, "common.seed"),
        ({"common": {"protocol": 17}}, "common.protocol"),
        ({"train_source": {"hflip": 1}}, "train_source.hflip"),
        ({"evaluate": {"scales": []}}, "evaluate.scales"),
        ({"bogus": {}}, "bogus"),
        ({"variants": ["STvM", "XYZ"]}, "variants"),
        ({"variants": ["AdaBN", "STvM"]}, "variants: AdaBN is the reference run"),
        ({"data": {"source": {"dataset": "kitti"}}}, "data.source.dataset"),
    ],
)
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(StvmError) as err:
        params_from_dict(raw)
    assert str(err.value).startswith(key)


def test_int_accepted_for_float_and_file_errors_name_the_file(tmp_path):
    assert params_from_dict({"adapt": {"lr": 1}}).adapt.lr == 1.0
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"adapt": {"q_m": 3}}))
    with pytest.raises(StvmError, match=r"p\.yaml: adapt\.q_m"):
        load_params(bad)
    bad.write_text("adapt: [unclosed")
    with pytest.raises(StvmError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(StvmError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


def test_params_table_lists_every_adapt_key():
    table = params_table()
    for key in ("adapt.ema_lambda", "adapt.tau_mocm", "train_source.iterations", "prepare.width"):
        assert f"`{key}`" in table


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_benchmark_params_differ_from_the_demo_only_where_documented():
    """configs/synth_benchmark/calibrated.yaml (`make calibrate`, `make ablation`) is the demo plus the marked keys."""
    load_params(ROOT / "configs/synth_benchmark/calibrated.yaml")  # validates
    demo = _flat(yaml.safe_load((ROOT / "params.yaml").read_text()))
    cal = _flat(yaml.safe_load((ROOT / "configs/synth_benchmark/calibrated.yaml").read_text()))
    assert demo.keys() == cal.keys()
    changed = {k for k in demo if demo[k] != cal[k]}
    assert changed == {"synth.shift", "prepare.width", "prepare.height", "train_source.iterations",
                       "train_source.crop", "adapt.iterations", "variants"}
    lines = (ROOT / "configs/synth_benchmark/calibrated.yaml").read_text().splitlines()
    marked = {ln.split(":")[0].strip() for ln in lines if "# benchmark" in ln}
    assert {k.split(".")[-1] for k in changed} - {"height"} <= marked  # each change says so in the file
    assert cal["synth.shift"] > demo["synth.shift"] and cal["prepare.source_holdout"] > 0
    assert cal["variants"] == ["ST", "ST_Aug", "ST_MT", "STvM_Raw", "STvM"] and cal["seeds"] == [0, 1, 2]


def test_synth_size_floor_is_one_number_checked_in_both_places(tmp_path):
    from stvm.config import SYNTH_MIN_SIDE
    from stvm.data.synth import write_synth

    with pytest.raises(StvmError, match=r"^synth\.width"):
        params_from_dict({"synth": {"width": SYNTH_MIN_SIDE - 1}})
    assert params_from_dict({"synth": {"width": SYNTH_MIN_SIDE}}).synth.width == SYNTH_MIN_SIDE
    with pytest.raises(StvmError, match=f"at least {SYNTH_MIN_SIDE}x{SYNTH_MIN_SIDE}"):
        write_synth(tmp_path / "s", n_source=1, n_target_train=1, n_target_val=1, width=SYNTH_MIN_SIDE - 1,
                    height=64, seed=0)


def test_set_overrides_are_applied_then_validated(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"adapt": {"lr": 0.1}, "train_source": {"arch": "deeplabv2_r18"}}))
    p = load_params(path, ["adapt.lr=0.01", "train_source.head_dilations=[1, 2, 2, 3]", "synth.parts.shape=0.5"])
    assert p.adapt.lr == 0.01 and p.train_source.head_dilations == [1, 2, 2, 3] and p.synth.parts.shape == 0.5
    assert load_params(path).adapt.lr == 0.1  # the file itself is unchanged
    with pytest.raises(StvmError, match=r"p.yaml with --set adapt.lr=-1: adapt.lr: expected a value in"):
        load_params(path, ["adapt.lr=-1"])
    with pytest.raises(StvmError, match="adapt.lrr: unknown key"):
        load_params(path, ["adapt.lrr=1"])
    with pytest.raises(StvmError, match="expected section.key=value"):
        load_params(path, ["adapt.lr"])


def test_set_reaches_the_trained_model_through_the_cli(tmp_path):
    from stvm.cli import main
    from stvm.training import load_checkpoint
    from tests.fixtures.tiny import write_prepared

    images, labels = write_prepared(tmp_path / "data", n=2)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"train_source": {"arch": "deeplabv2_tiny", "init": "random", "iterations": 1,
                                                     "crop": 32, "lr": 0.5}}))
    argv = ["train_source", "--params", str(path), "--images", str(images), "--labels", str(labels), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "m"), "--set", "train_source.lr=0.0123",
                 "--set", "train_source.head_dilations=[1, 2, 3, 4]"]) == 0
    meta = load_checkpoint(tmp_path / "m/model.pt")
    assert meta["params"]["lr"] == 0.0123 and meta["head_dilations"] == [1, 2, 3, 4]
    assert main([*argv, "--out", str(tmp_path / "n"), "--set", "train_source.lr=x"]) == 2
    assert not (tmp_path / "n/model.pt").exists()


@pytest.mark.parametrize("arch, dil, ok", [("deeplabv2_r18", [1, 2, 2, 3], True), ("deeplabv2_r18", [1, 2, 3], False),
                                           ("deeplabv3_r18", [1, 2, 3], True), ("deeplabv2_r18", [0, 1, 2, 3], False),
                                           ("deeplabv2_r18", [], True)])
def test_head_dilations_fit_the_arch(arch, dil, ok):
    raw = {"train_source": {"arch": arch, "head_dilations": dil}}
    if ok:
        assert params_from_dict(raw).train_source.dilations() == (tuple(dil) or None)
    else:
        with pytest.raises(StvmError, match="train_source.head_dilations"):
            params_from_dict(raw)


def test_the_arch_choices_are_the_model_table():
    from stvm import config
    from stvm.models import deeplab

    assert set(typing.get_args(typing.get_type_hints(config.TrainSourceParams)["arch"])) == set(deeplab.ARCHS)
    assert config.NO_PRETRAINED == deeplab.NO_PRETRAINED


def test_an_arch_without_imagenet_weights_refuses_init_imagenet_in_one_line(tmp_path, capsys):
    from stvm.cli import main

    raw = {"train_source": {"arch": "deeplabv2_tiny"}}  # init's default is imagenet
    with pytest.raises(StvmError, match="train_source.init: deeplabv2_tiny has no ImageNet weights"):
        params_from_dict(raw)
    assert params_from_dict({"train_source": {"arch": "deeplabv2_tiny", "init": "random"}}).train_source.init == "random"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["params", "--params", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_source.init: deeplabv2_tiny has no ImageNet weights" in err, err


PARAMS_DOC = ROOT / "docs/PARAMS.md"
BEGIN, END = "<!-- generated by `python -m stvm params`: do not edit by hand -->\n", "\n<!-- end of generated table -->"


def test_the_params_reference_is_the_generated_table():
    """docs/PARAMS.md's table is `stvm params` output: a new or changed parameter, default or help text
    fails here until the block between the markers is regenerated (the README links to it)."""
    text = PARAMS_DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "docs/PARAMS.md: the generated block's markers"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block == params_table(), "docs/PARAMS.md is stale: paste `python -m stvm params` between its markers"
    assert "](docs/PARAMS.md)" in (ROOT / "README.md").read_text()
