"""stvm.adapt.teacher: EMA of parameters and buffers, update schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stvm.adapt.teacher import ema_update, relative_drift, should_update, student_weight


def net(fill: float) -> nn.Module:
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for t in list(m.parameters()) + [m[1].running_mean, m[1].running_var]:
            t.fill_(fill)
        m[1].num_batches_tracked.fill_(int(fill))
    return m


def test_ema_half_averages_params_and_float_buffers():
    t, s = net(2.0), net(6.0)
    ema_update(t, s, 0.5)
    for p in t.parameters():
        assert torch.allclose(p, torch.full_like(p, 4.0))
    assert torch.allclose(t[1].running_mean, torch.full((2,), 4.0))
    assert torch.allclose(t[1].running_var, torch.full((2,), 4.0))
    assert t[1].num_batches_tracked.item() == 6  # integer buffer copied
    assert all(torch.equal(p, torch.full_like(p, 6.0)) for p in s.parameters())  # student untouched


def test_ema_small_lambda_and_limits():
    t, s = net(1.0), net(3.0)
    ema_update(t, s, 1e-3)
    assert torch.allclose(t[0].weight, torch.full((2, 3), 0.999 * 1.0 + 1e-3 * 3.0))
    t0, s0 = net(1.0), net(3.0)
    ema_update(t0, s0, 0.0)
    assert all(torch.equal(p, torch.full_like(p, 1.0)) for p in t0.parameters())
    t1, s1 = net(1.0), net(3.0)
    ema_update(t1, s1, 1.0)
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in t1.parameters())


def test_ema_rejects_mismatch_and_bad_lambda():
    with pytest.raises(ValueError):
        ema_update(net(0.0), nn.Sequential(nn.Linear(3, 2)), 0.5)
    with pytest.raises(ValueError):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 4), 0.5)
    with pytest.raises(ValueError):
        ema_update(net(0.0), net(1.0), 1.5)


def test_should_update_every_interval():
    due = [i for i in range(0, 401) if should_update(i, 100)]
    assert due == [100, 200, 300, 400]
    assert should_update(3, 1) and not should_update(0, 1)
    with pytest.raises(ValueError):
        should_update(5, 0)


def test_student_weight_readings():
    assert student_weight(1e-3, "smoothing") == 1e-3
    assert student_weight(1e-3, "refresh") == pytest.approx(0.999)
    # 200 updates (20k iterations at interval 100): the source model's share of the teacher
    assert (1 - student_weight(1e-3, "smoothing")) ** 200 == pytest.approx(0.8186, abs=1e-4)
    assert (1 - student_weight(1e-3, "refresh")) ** 1 == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        student_weight(0.5, "other")
    with pytest.raises(ValueError):
        student_weight(float("nan"), "smoothing")


def test_relative_drift_measures_distance_from_the_reference():
    t, s = net(1.0), net(3.0)
    ref = [p.detach().clone() for p in t.parameters()]
    assert float(relative_drift(t, ref)) == 0.0
    ema_update(t, s, 0.5)  # every parameter 1 -> 2: |diff| / |ref| = 1
    assert float(relative_drift(t, ref)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        relative_drift(t, ref[:1])
