"""stvm.adapt.losses against hand computations and torch references (Eqs. 2-5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stvm.adapt.losses import nca_loss, normalized_sq_distance, reliability, weighted_ce


def brute_distance(f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eq. 3 literally: difference of unit vectors, squared, summed. f (N,D), p (C,D) -> (N,C)."""
    fu = f / f.norm(dim=1, keepdim=True)
    pu = p / p.norm(dim=1, keepdim=True)
    return ((fu[:, None, :] - pu[None, :, :]) ** 2).sum(-1)


def test_distance_hand_example_rows_and_maps():
    f = torch.tensor([[3.0, 4.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # (0.6-1)^2 + 0.8^2 = 0.8 ; 0.6^2 + (0.8-1)^2 = 0.4
    assert torch.allclose(normalized_sq_distance(f, p), torch.tensor([[0.8, 0.4]]), atol=1e-6)
    fmap = f.view(1, 2, 1, 1).expand(2, 2, 3, 5)
    d = normalized_sq_distance(fmap, p)
    assert d.shape == (2, 2, 3, 5)
    assert torch.allclose(d[:, 0], torch.full((2, 3, 5), 0.8), atol=1e-6)
    assert torch.allclose(d[:, 1], torch.full((2, 3, 5), 0.4), atol=1e-6)


def test_distance_matches_brute_force_range_and_scale_invariance():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(50, 16, generator=g)
    p = torch.randn(7, 16, generator=g)
    d = normalized_sq_distance(f, p)
    assert torch.allclose(d, brute_distance(f, p), atol=1e-5)
    assert d.min() >= 0 and d.max() <= 4
    assert torch.allclose(normalized_sq_distance(f * 7.3, p * 0.01), d, atol=1e-5)
    # identical direction -> 0, opposite -> 4
    ends = normalized_sq_distance(torch.stack([p[0] * 3, -p[0]]), p[:1])
    assert torch.allclose(ends[:, 0], torch.tensor([0.0, 4.0]), atol=1e-5)


def test_distance_map_consistent_with_rows_and_zero_vector_finite():
    g = torch.Generator().manual_seed(1)
    fmap = torch.randn(2, 8, 3, 4, generator=g)
    p = torch.randn(5, 8, generator=g)
    d_map = normalized_sq_distance(fmap, p)
    d_rows = normalized_sq_distance(fmap.permute(0, 2, 3, 1).reshape(-1, 8), p)
    assert torch.allclose(d_map.permute(0, 2, 3, 1).reshape(-1, 5), d_rows, atol=1e-6)
    z = torch.zeros(1, 8, requires_grad=True)
    dz = normalized_sq_distance(z, p)
    dz.sum().backward()
    assert torch.isfinite(dz).all() and torch.isfinite(z.grad).all()


def test_nca_loss_hand_value_and_mean():
    dist = torch.tensor([[0.2, 1.0], [1.5, 0.5]])
    labels = torch.tensor([0, 0])
    t = 0.5
    l0 = -math.log(math.exp(-0.4) / (math.exp(-0.4) + math.exp(-2.0)))
    l1 = -math.log(math.exp(-3.0) / (math.exp(-3.0) + math.exp(-1.0)))
    assert nca_loss(dist, labels, t).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    valid = torch.tensor([True, False])
    assert nca_loss(dist, labels, t, valid).item() == pytest.approx(l0, rel=1e-6)


def test_nca_loss_empty_and_all_invalid_are_zero_with_graph():
    d = torch.zeros(0, 4, requires_grad=True)
    loss = nca_loss(d, torch.zeros(0, dtype=torch.long), 0.25)
    loss.backward()
    assert loss.item() == 0.0 and d.grad is not None
    d2 = torch.rand(3, 4, requires_grad=True)
    loss2 = nca_loss(d2, torch.tensor([0, 1, 2]), 0.25, torch.zeros(3, dtype=torch.bool))
    loss2.backward()
    assert loss2.item() == 0.0 and torch.equal(d2.grad, torch.zeros(3, 4))


def test_nca_loss_gradient_pulls_to_labelled_proxy():
    d = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    nca_loss(d, torch.tensor([1]), 0.25).backward()
    assert (
        d.grad[0, 1] > 0 and d.grad[0, 0] < 0 and d.grad[0, 2] < 0
    )  # descent lowers d to own proxy


def test_reliability_eq4():
    alpha, beta = 2.0, 0.6
    assert reliability(torch.tensor(beta), alpha, beta).item() == pytest.approx(0.5)
    assert reliability(torch.tensor(0.0), alpha, beta).item() == pytest.approx(
        1 / (1 + math.exp(-alpha * beta))
    )
    d = torch.linspace(0, 4, 41)
    w = reliability(d, alpha, beta)
    assert (w[1:] < w[:-1]).all() and (w > 0).all() and (w < 1).all()
    near = torch.tensor(beta + 0.1)
    assert reliability(near, 10.0, beta) < reliability(near, alpha, beta) < 0.5
    assert (
        reliability(torch.tensor(beta - 0.1), 10.0, beta)
        > reliability(torch.tensor(beta - 0.1), alpha, beta)
        > 0.5
    )


def _ce_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 4, 6, generator=g, requires_grad=True)
    pseudo = torch.randint(0, 5, (2, 4, 6), generator=g)
    return logits, pseudo


def test_weighted_ce_w1_equals_cross_entropy_and_w0_is_zero():
    logits, pseudo = _ce_inputs()
    ones = torch.ones(pseudo.shape)
    ref = F.cross_entropy(logits, pseudo, reduction="mean")
    assert torch.allclose(weighted_ce(logits, pseudo, ones), ref, atol=1e-6)
    assert weighted_ce(logits, pseudo, torch.zeros(pseudo.shape)).item() == 0.0


def test_weighted_ce_per_pixel_weights_and_ignore():
    logits, pseudo = _ce_inputs(1)
    g = torch.Generator().manual_seed(2)
    w = torch.rand(pseudo.shape, generator=g)
    pseudo = pseudo.clone()
    pseudo[0, 0, :3] = 255
    logp = F.log_softmax(logits, 1)
    keep = pseudo != 255
    nll = -logp.gather(1, pseudo.clamp(max=4)[:, None])[:, 0]
    expected = (nll * w)[keep].sum() / keep.sum()
    assert torch.allclose(weighted_ce(logits, pseudo, w), expected, atol=1e-6)
    ref = F.cross_entropy(logits, pseudo, ignore_index=255)
    assert torch.allclose(weighted_ce(logits, pseudo, torch.ones(pseudo.shape)), ref, atol=1e-6)


def test_weighted_ce_no_gradient_into_weight():
    logits, pseudo = _ce_inputs(3)
    w = torch.full(pseudo.shape, 0.5, requires_grad=True)
    loss = weighted_ce(logits, pseudo, w)
    loss.backward()
    assert w.grad is None
    g_half = logits.grad.clone()
    logits.grad = None
    weighted_ce(logits, pseudo, torch.ones(pseudo.shape)).backward()
    assert torch.allclose(g_half, 0.5 * logits.grad, atol=1e-7)


def test_shape_errors():
    with pytest.raises(ValueError):
        normalized_sq_distance(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError):
        weighted_ce(
            torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long), torch.ones(1, 4, 5)
        )


def test_no_host_sync_on_meta_device():
    """The meta device has no data: any .item()/nonzero()/data-dependent shape would raise here."""
    f = torch.randn(2, 8, 3, 4, device="meta")
    p = torch.randn(5, 8, device="meta")
    d = normalized_sq_distance(f, p)
    rows = normalized_sq_distance(torch.randn(6, 8, device="meta"), p)
    loss = nca_loss(
        rows,
        torch.zeros(6, dtype=torch.long, device="meta"),
        0.25,
        torch.ones(6, dtype=torch.bool, device="meta"),
    )
    w = reliability(d[:, 0], 2.0, 0.6)
    ce = weighted_ce(d, torch.zeros(2, 3, 4, dtype=torch.long, device="meta"), w)
    assert loss.shape == ce.shape == () and w.shape == (2, 3, 4)
