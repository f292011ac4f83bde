import math

import torch

from stvm.evaluate.silhouette import UniformSample, silhouette


def brute_force(x, y):
    z = torch.nn.functional.normalize(x.double(), dim=1)
    n = len(y)
    d = lambda i, j: float(((z[i] - z[j]) ** 2).sum().sqrt())  # noqa: E731  Euclidean
    out = []
    for i in range(n):
        same = [d(i, j) for j in range(n) if j != i and y[j] == y[i]]
        if not same:
            out.append(math.nan)
            continue
        a = sum(same) / len(same)
        b = min(
            sum(d(i, j) for j in range(n) if y[j] == c) / int((y == c).sum())
            for c in set(y.tolist()) if c != int(y[i])
        )
        out.append((b - a) / max(a, b))
    return torch.tensor(out, dtype=torch.float64)


def test_silhouette_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g)
    y = torch.randint(0, 4, (30,), generator=g)
    x[y == 1] += 3.0
    per_class, class_mean, overall = silhouette(x, y, n_classes=6, chunk=7)  # chunks of uneven size
    ref = brute_force(x, y)
    assert math.isclose(overall, float(ref.nanmean()), rel_tol=1e-5)
    ref_pc = torch.stack([ref[y == c].nanmean() for c in range(4)])
    assert torch.allclose(per_class[:4], ref_pc.to(per_class.dtype))
    assert torch.isnan(per_class[4:]).all()
    assert math.isclose(class_mean, float(ref_pc.mean()), rel_tol=1e-5)


def test_separated_clusters_score_near_one():
    x = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(5, 1), torch.tensor([[0.0, 1.0]]).repeat(5, 1)])
    x += 0.01 * torch.randn(10, 2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0] * 5 + [1] * 5)
    assert silhouette(x, y, 2)[2] > 0.95


def test_uniform_sample_keeps_k_rows_uniformly_and_all_when_fewer():
    small = UniformSample(100, seed=0)
    small.add(torch.arange(10.0)[:, None], torch.arange(10))
    assert sorted(small.labels.tolist()) == list(range(10))  # fewer than k: every row
    counts = torch.zeros(40)
    for seed in range(200):  # 4 batches of 10 rows, keep 8: every row equally likely (8/40)
        s = UniformSample(8, seed=seed)
        for b in range(4):
            rows = torch.arange(b * 10, b * 10 + 10)
            s.add(rows[:, None].float(), rows)
        assert len(s.labels) == 8 and s.labels.unique().numel() == 8
        assert torch.equal(s.rows[:, 0].long(), s.labels)  # rows stay with their labels
        counts[s.labels] += 1
    assert counts.sum() == 1600 and counts.min() > 20 and counts.max() < 65  # expectation 40
