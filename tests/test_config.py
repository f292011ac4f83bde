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
