"""stvm.evaluate.maps: the panel's maps, written by evaluate, equal the networks' live outputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from stvm.adapt.loop import adapt
from stvm.data.images import normalize, read_label, read_rgb
from stvm.evaluate.maps import map_path, write_maps
from stvm.evaluate.nets import confidence_map, load_nets, probs, reliability_map, to_u8
from tests.fixtures.tiny import adapt_params, source_model_and_target


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    source, target = source_model_and_target(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapt(adapt_params(iterations=2), variant="STvM", source_model=source, target_images=target,
              out=root / "stvm", seed=0, device="cpu", show_progress=False)
    return source, root / "stvm/model.pt", target


def test_maps_equal_the_networks_outputs_at_the_input_size(models, tmp_path):
    _, adapted, images = models
    index = write_maps(tmp_path, load_nets(adapted, torch.device("cpu")), images, 2, (48, 32), torch.device("cpu"))
    assert index == {"images": ["00000", "00001"], "input_size": [48, 32], "reliability": True,
                     "confidence_of": "teacher"}
    nets = load_nets(adapted, torch.device("cpu"))
    for stem in index["images"]:
        x = normalize(read_rgb(images / f"{stem}.png"))[None]
        pred = read_label(map_path(tmp_path, stem, "prediction"))
        assert np.array_equal(pred, probs(nets.model, x).argmax(0).numpy())
        assert np.array_equal(read_label(map_path(tmp_path, stem, "confidence")), to_u8(confidence_map(nets, x)))
        assert np.array_equal(read_label(map_path(tmp_path, stem, "reliability")), to_u8(reliability_map(nets, x)))


def test_a_source_model_has_its_own_confidence_and_no_reliability(models, tmp_path):
    source, _, images = models
    index = write_maps(tmp_path, load_nets(source, torch.device("cpu")), images, 1, (40, 24), torch.device("cpu"))  # resized to the input size
    assert index["reliability"] is False and index["confidence_of"] == "network"
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["00000_confidence.png", "00000_prediction.png"]
    assert read_label(map_path(tmp_path, "00000", "prediction")).shape == (24, 40)


def test_no_maps_asked_writes_an_empty_folder(models, tmp_path):
    source, _, images = models
    assert write_maps(tmp_path, load_nets(source, torch.device("cpu")), images, 0, (48, 32), torch.device("cpu")) == {"images": []}
    assert list((tmp_path / "maps").iterdir()) == []
