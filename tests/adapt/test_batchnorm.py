"""BN statistics during adaptation: AdaBN re-estimation and frozen BN (stvm.adapt.batchnorm)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stvm.adapt.batchnorm import bn_layers, freeze_bn, reestimate_bn


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def test_reestimate_bn_is_the_average_of_per_batch_statistics():
    net = _net()
    x = torch.randn(6, 3, 5, 5) * 3 + 2
    seen = reestimate_bn(net, [x[:2], x[2:4], x[4:]])
    assert seen == 6
    act = net[0](x)
    # equal batch sizes: the average of the batch means is the mean over all images
    assert torch.allclose(net[1].running_mean, act.mean((0, 2, 3)), atol=1e-5)
    per_batch_var = torch.stack([act[i:i + 2].var((0, 2, 3), unbiased=True) for i in (0, 2, 4)])
    assert torch.allclose(net[1].running_var, per_batch_var.mean(0), atol=1e-4)
    # independent of the order of the batches
    ref = _net()
    reestimate_bn(ref, [x[4:], x[:2], x[2:4]])
    for a, b in ((net[1], ref[1]), (net[4], ref[4])):
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-5)
        assert torch.allclose(a.running_var, b.running_var, atol=1e-5)


def test_reestimate_bn_changes_only_statistics_and_restores_modes():
    net = _net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reestimate_bn(net, [torch.randn(2, 3, 4, 4) + 5])
    after = net.state_dict()
    assert not net.training and all(not m.training for m in bn_layers(net))
    assert all(m.momentum == 0.1 for m in bn_layers(net))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("running_" in k or "num_batches" in k for k in changed)
    assert "0.weight" not in changed and "1.weight" not in changed


def test_reestimate_bn_needs_a_batch():
    with pytest.raises(ValueError, match="at least one batch"):
        reestimate_bn(_net(), [])


def test_freeze_bn_uses_running_statistics_and_keeps_them():
    net = _net()
    net.train()
    freeze_bn(net)
    assert net.training and all(not m.training for m in bn_layers(net))
    stats = net[1].running_mean.clone()
    net(torch.randn(2, 3, 4, 4) + 7)
    assert torch.equal(net[1].running_mean, stats)
    ref = _net().eval()
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(net(x), ref(x))  # frozen train-mode net computes what the eval net does
