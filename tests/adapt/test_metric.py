"""stvm.adapt.metric: metric head, class-balanced thresholds (Eq. 1), balanced sampling, resolution
helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stvm.adapt.metric import (
    ClassThresholds,
    MetricHead,
    distance_to_prediction,
    downsample_labels,
    gather_pixels,
    select_metric_samples,
)

# Hand-made confidences. q = 0.2, descending order, position floor(q * n):
# class 0: n = 10 -> position 2 -> 0.7 ; class 1: n = 5 -> position 1 -> 0.95 ; class 2 absent.
C0 = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
C1 = [0.5, 0.99, 0.6, 0.95, 0.7]


def hand_batch():
    """(prob (1,4,4), pred (1,4,4)): C0/C1 in shuffled order plus one very confident 255 (ignored)
    pixel."""
    prob = torch.tensor(C0 + C1 + [0.999] * (16 - 15), dtype=torch.float32)
    pred = torch.tensor([0] * 10 + [1] * 5 + [255])
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    return prob[perm].view(1, 4, 4), pred[perm].view(1, 4, 4)


def test_metric_head_forward_distances_and_proxy_init():
    head = nn.Conv2d(4, 8, 1)
    m = MetricHead(head, n_classes=3, n_f=8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 4, 5, 6)
    f = m(x)
    assert f.shape == (2, 8, 5, 6)
    assert m.distances(f).shape == (2, 3, 5, 6)
    p = m.proxies.detach()
    assert torch.allclose(p @ p.t(), torch.eye(3), atol=1e-5)  # orthonormal rows
    m2 = MetricHead(nn.Conv2d(4, 8, 1), 3, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m2.proxies, m.proxies)
    assert set(dict(m.named_parameters())) >= {"proxies", "head.weight"}
    wide = MetricHead(
        nn.Identity(), n_classes=10, n_f=4, generator=torch.Generator().manual_seed(0)
    )
    assert wide.proxies.shape == (10, 4)


def test_thresholds_percentile_first_update_and_unseen():
    th = ClassThresholds(3, momentum=0.9)
    prob, pred = hand_batch()
    pct = th.update(prob, pred, q=0.2)
    assert pct[0].item() == pytest.approx(0.7) and pct[1].item() == pytest.approx(0.95)
    assert torch.isnan(pct[2])
    assert th.tau.tolist() == pytest.approx(
        [0.7, 0.95, 1.0]
    )  # first sighting: no averaging with 1.0
    assert th.seen.tolist() == [True, True, False]
    # Eq. 1 with '>': the top floor(q*n) pixels of each class pass
    passed = prob > th.tau[pred.clamp(max=2)]
    assert int((passed & (pred == 0)).sum()) == 2 and int((passed & (pred == 1)).sum()) == 1


def test_thresholds_ema_and_absent_class_keeps_value():
    th = ClassThresholds(3, momentum=0.9)
    prob, pred = hand_batch()
    th.update(prob, pred, q=0.2)
    # second batch: only class 1, five pixels 0.1..0.5 -> position 1 -> 0.4
    prob2 = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    pred2 = torch.ones(1, 5, dtype=torch.long)
    th.update(prob2, pred2, q=0.2)
    assert th.tau[1].item() == pytest.approx(0.9 * 0.95 + 0.1 * 0.4)
    assert th.tau[0].item() == pytest.approx(0.7)
    assert th.tau[2].item() == 1.0
    state = th.state_dict()
    th2 = ClassThresholds(3, momentum=0.9)
    th2.load_state_dict(state)
    assert torch.equal(th2.tau, th.tau) and torch.equal(th2.seen, th.seen)


def test_thresholds_single_pixel_class_and_q_extremes():
    th = ClassThresholds(2, momentum=0.5)
    th.update(torch.tensor([0.3, 0.6, 0.9]), torch.tensor([1, 0, 0]), q=1.0)
    assert th.tau.tolist() == pytest.approx([0.6, 0.3])  # q=1 -> smallest value (clamped position)
    th2 = ClassThresholds(2)
    th2.update(torch.tensor([0.3, 0.6, 0.9]), torch.tensor([1, 0, 0]), q=0.0)
    assert th2.tau.tolist() == pytest.approx([0.9, 0.3])  # q=0 -> the maximum


def selection_case():
    g = torch.Generator().manual_seed(5)
    pred = torch.randint(0, 4, (2, 8, 8), generator=g)
    pred[0, 0, :] = 255
    prob = torch.rand(2, 8, 8, generator=g)
    tau = torch.tensor([0.3, 0.5, 0.2, 2.0])  # class 3 can never pass
    return pred, prob, tau


def test_select_metric_samples_min_count_rule_balanced_and_above_threshold():
    pred, prob, tau = selection_case()
    s = select_metric_samples(
        pred, prob, tau, n_per_class=6, generator=torch.Generator().manual_seed(0), rule="min_count"
    )
    assert s.indices.shape == s.labels.shape == s.valid.shape == (4 * 6,)
    flat_pred, flat_prob = pred.reshape(-1), prob.reshape(-1)
    eligible = (flat_pred < 4) & (flat_prob > tau[flat_pred.clamp(max=3)])
    avail = torch.bincount(flat_pred[eligible], minlength=4)
    k = min(6, int(avail[avail > 0].min()))
    idx, lab = s.indices[s.valid], s.labels[s.valid]
    assert torch.equal(torch.bincount(lab, minlength=4), torch.tensor([k, k, k, 0]))
    assert torch.equal(flat_pred[idx], lab)
    assert (flat_prob[idx] > tau[lab]).all()
    assert idx.unique().numel() == idx.numel()


def test_select_metric_samples_min_count_capped_by_rarest_class_and_deterministic():
    pred = torch.tensor([[[0, 0, 0, 0, 1, 1, 2, 2]]])
    prob = torch.tensor([[[0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9]]])
    tau = torch.tensor([0.5, 0.5, 0.5])
    s = select_metric_samples(pred, prob, tau, 3, torch.Generator().manual_seed(1), rule="min_count")
    assert torch.bincount(s.labels[s.valid], minlength=3).tolist() == [1, 1, 1]
    assert s.indices[s.valid][s.labels[s.valid] == 1].tolist() == [4]
    pred2, prob2, tau2 = selection_case()
    runs = [
        select_metric_samples(pred2, prob2, tau2, 4, torch.Generator().manual_seed(s), rule=rule)
        for s in (7, 7, 8) for rule in ("min_count", "per_class")
    ]
    for a, b, c in ((runs[0], runs[2], runs[4]), (runs[1], runs[3], runs[5])):  # per rule
        assert torch.equal(a.indices, b.indices) and torch.equal(a.valid, b.valid)
        assert not torch.equal(a.indices, c.indices)


def test_select_metric_samples_per_class_gives_every_present_class_the_full_count():
    pred, prob, tau = selection_case()
    s = select_metric_samples(pred, prob, tau, 6, torch.Generator().manual_seed(0))
    flat_pred, flat_prob = pred.reshape(-1), prob.reshape(-1)
    eligible = (flat_pred < 4) & (flat_prob > tau[flat_pred.clamp(max=3)])
    avail = torch.bincount(flat_pred[eligible], minlength=4)
    idx, lab = s.indices[s.valid], s.labels[s.valid]
    want = torch.where(avail > 0, torch.full_like(avail, 6), torch.zeros_like(avail))
    assert torch.equal(torch.bincount(lab, minlength=4), want)
    assert torch.equal(flat_pred[idx], lab) and (flat_prob[idx] > tau[lab]).all()
    for c in range(3):  # distinct pixels while the class has enough, every pixel used otherwise
        picked = idx[lab == c]
        assert picked.unique().numel() == min(6, int(avail[c]))


def test_select_metric_samples_per_class_repeats_a_rare_class_evenly():
    pred = torch.tensor([[[0, 0, 0, 0, 0, 0, 1, 2, 2]]])
    prob = torch.full((1, 1, 9), 0.9)
    s = select_metric_samples(pred, prob, torch.tensor([0.5, 0.5, 0.5]), 4, torch.Generator())
    idx, lab = s.indices[s.valid], s.labels[s.valid]
    assert torch.bincount(lab, minlength=3).tolist() == [4, 4, 4]
    assert idx[lab == 1].tolist() == [6, 6, 6, 6]
    assert sorted(idx[lab == 2].tolist()) == [7, 7, 8, 8]
    with pytest.raises(ValueError, match="rule"):
        select_metric_samples(pred, prob, torch.tensor([0.5] * 3), 4, torch.Generator(), rule="x")


def test_select_metric_samples_nothing_eligible():
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    s = select_metric_samples(
        pred, torch.full((1, 4, 4), 0.5), torch.tensor([0.9, 0.9]), 3, torch.Generator()
    )
    assert not s.valid.any() and s.indices.shape == (6,)


def test_gather_pixels_and_downsample_labels():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    rows = gather_pixels(x, torch.tensor([0, 5]))  # pixel 5 = image 1, (0, 1)
    assert torch.equal(rows, torch.stack([x[0, :, 0, 0], x[1, :, 0, 1]]))
    pred = torch.arange(16).view(1, 4, 4)
    small = downsample_labels(pred, (2, 2))
    assert small.dtype == pred.dtype and small.tolist() == [[[0, 2], [8, 10]]]


def test_distance_to_prediction_same_and_upsampled_size():
    dist = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    pred = torch.tensor([[[0, 1], [2, 0]], [[2, 2], [1, 0]]])
    d = distance_to_prediction(dist, pred)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                assert d[b, i, j] == dist[b, pred[b, i, j], i, j]
    const = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    big_pred = torch.tensor([[0, 1, 2, 1] * 4]).view(1, 4, 4)
    up = distance_to_prediction(const, big_pred)
    assert up.shape == (1, 4, 4)
    assert torch.allclose(up, torch.tensor([0.1, 0.2, 0.3])[big_pred])


def test_no_host_sync_on_meta_device():
    """Thresholds, selection and distance lookup run on the data-less meta device (no host
    read-back)."""
    logits = torch.randn(2, 19, 8, 8, device="meta")
    prob_max, pred = logits.softmax(1).max(1)
    th = ClassThresholds(19).to("meta")
    th.update(prob_max, pred, 0.2)
    s = select_metric_samples(pred, prob_max, th.tau, 4, torch.Generator())
    assert s.indices.shape == (19 * 4,)
    d = distance_to_prediction(
        torch.rand(2, 19, 8, 8, device="meta"),
        torch.zeros(2, 32, 32, dtype=torch.long, device="meta"),
    )
    assert d.shape == (2, 32, 32)
