"""Paths that differ on CUDA, each run on the CPU and (marked ``cuda``) on the GPU.

Every test takes a ``dev`` parameter: the ``cpu`` case runs in CI; the ``cuda`` case is marked
``cuda`` and skipped without a GPU (tests/conftest.py states why). ``tools/gpu_check.py`` runs the
``cuda`` cases on a GPU machine (``pytest -m cuda tests/test_cuda.py``). Where the CUDA code must not
synchronise with the host, ``torch.cuda.set_sync_debug_mode("error")`` turns a hidden sync into an
error (CUDA only: the CPU has nothing to synchronise).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stvm.adapt.classmix import PatchBuffers
from stvm.adapt.metric import fixed_bincount
from stvm.adapt.teacher import ema_update, relative_drift
from stvm.errors import StvmError
from stvm.evaluate.metrics import ConfusionMatrix
from stvm.runtime import autocast
from stvm.training import NonFiniteGuard

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
CUDA_ONLY = [pytest.param("cuda", marks=pytest.mark.cuda)]


@contextlib.contextmanager
def no_host_sync(dev: torch.device):
    """Make any CUDA host synchronisation inside the block an error (nothing to check on CPU)."""
    if dev.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 1))


@pytest.mark.parametrize("dev", DEVICES)
def test_autocast_dtype_and_fp32_master_weights(dev):
    dev = torch.device(dev)
    torch.manual_seed(0)
    net = tiny_net().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8, device=dev)
    y = torch.randint(0, 5, (2, 8, 8), device=dev)
    with autocast(dev):
        out = net(x)
    assert out.dtype == (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    loss = F.cross_entropy(out.float(), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("dev", DEVICES)
def test_fixed_bincount_matches_numpy_without_sync(dev):
    dev = torch.device(dev)
    x = torch.randint(0, 7, (1000,), generator=torch.Generator().manual_seed(1))
    xd = x.to(dev)
    with no_host_sync(dev):
        counts = fixed_bincount(xd, 9)
    assert counts.device.type == dev.type
    assert counts.cpu().tolist() == np.bincount(x.numpy(), minlength=9).tolist()


@pytest.mark.parametrize("dev", DEVICES)
def test_confusion_matrix_on_device_matches_numpy(dev):
    dev = torch.device(dev)
    g = torch.Generator().manual_seed(2)
    pred = torch.randint(0, 6, (3, 16, 16), generator=g)
    pred[0, 0, :4] = 255  # "other" column
    gt = torch.randint(0, 5, (3, 16, 16), generator=g)
    gt[1, :2] = 255  # ignored ground truth
    cm = ConfusionMatrix(5, dev)
    cm.update(pred.to(dev), gt.to(dev))
    assert cm.matrix.device.type == dev.type
    ref = np.zeros((5, 6), np.int64)
    p, t = pred.numpy().ravel(), gt.numpy().ravel()
    keep = t < 5
    np.add.at(ref, (t[keep], np.where(p[keep] < 5, p[keep], 5)), 1)
    assert np.array_equal(cm.matrix.cpu().numpy(), ref)


@pytest.mark.parametrize("dev", CUDA_ONLY)
def test_confusion_matrix_update_does_not_sync(dev):
    """ConfusionMatrix's promise: counting inside a GPU evaluation loop without a host sync."""
    dev = torch.device(dev)
    cm = ConfusionMatrix(5, dev)
    pred = torch.randint(0, 5, (64, 64), device=dev)
    with no_host_sync(dev):
        cm.update(pred, pred.clone())
    assert int(cm.matrix.sum()) == 64 * 64


def mocm_inputs(dev: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)
    pred = torch.randint(0, 4, (2, 8, 8), generator=g)
    rel = torch.rand(2, 8, 8, generator=g)
    dist = torch.where(pred == 3, 1.5, 0.25)  # class 3 rejected (mean 1.5 > tau), others accepted
    return tuple(t.to(dev) for t in (images, pred, rel, dist))


@pytest.mark.parametrize("dev", DEVICES)
def test_mocm_push_and_paste_on_device_match_cpu(dev):
    dev = torch.device(dev)
    cpu, on_dev = PatchBuffers(4, 3, 8, 8), PatchBuffers(4, 3, 8, 8, device=dev)
    inputs = mocm_inputs(dev)  # host-to-device copies outside the no-sync block
    with no_host_sync(dev):
        accept = on_dev.push(*inputs, tau_mocm=0.8)
    cpu.push(*mocm_inputs(torch.device("cpu")), tau_mocm=0.8)
    assert accept[:, 3].sum().item() == 0 and accept[:, :3].any()
    for name, ref in cpu.state_dict().items():
        assert torch.equal(on_dev.state_dict()[name].cpu(), ref), name
    base = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    pseudo, weight = torch.zeros(2, 8, 8, dtype=torch.long), torch.ones(2, 8, 8)
    # A CPU generator draws the same choices for both: the outputs must be identical.
    out_dev = on_dev.paste(base.to(dev), pseudo.to(dev), weight.to(dev), 2, torch.Generator().manual_seed(5))
    out_cpu = cpu.paste(base, pseudo, weight, 2, torch.Generator().manual_seed(5))
    for a, b in zip(out_dev, out_cpu, strict=True):
        assert a.device.type == dev.type and torch.equal(a.cpu(), b)
    assert (out_cpu[1] > 0).any()  # something was pasted


@pytest.mark.parametrize("dev", DEVICES)
def test_mocm_paste_with_device_generator_keeps_labels_consistent(dev):
    dev = torch.device(dev)
    buf = PatchBuffers(4, 3, 8, 8, device=dev)
    images, pred, rel, dist = mocm_inputs(dev)
    buf.push(images, pred, rel, dist, tau_mocm=0.8)
    base = torch.zeros(2, 3, 8, 8, device=dev)
    pseudo = torch.full((2, 8, 8), 9, dtype=torch.long, device=dev)  # 9: no stored class
    ones, gen = torch.ones(2, 8, 8, device=dev), torch.Generator(device=dev).manual_seed(6)
    with no_host_sync(dev):
        img, lab, w, covered = buf.paste(base, pseudo, ones, 2, gen)
    pasted = lab != 9
    assert torch.equal(covered, pasted) and pasted.any() and not (lab[pasted] == 3).any()  # only accepted classes are pasted
    assert torch.equal(w[~pasted], torch.ones_like(w[~pasted]))
    assert torch.equal(img[:, 0][~pasted], torch.zeros_like(img[:, 0][~pasted]))


@pytest.mark.parametrize("dev", DEVICES)
def test_ema_update_foreach_on_device(dev):
    dev = torch.device(dev)
    torch.manual_seed(7)
    teacher, student = tiny_net().to(dev), tiny_net().to(dev)
    student[1].num_batches_tracked.fill_(5)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with no_host_sync(dev):
        ema_update(teacher, student, 0.25)
    for name, value in teacher.state_dict().items():
        s = student.state_dict()[name]
        expected = s if not value.is_floating_point() else 0.75 * before[name] + 0.25 * s
        assert value.device.type == dev.type
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6, msg=name)
    ref = [p.detach().float().clone() for p in student.parameters()]
    with no_host_sync(dev):
        drift = relative_drift(teacher, ref)  # foreach norms on the device
    flat_t = torch.cat([p.detach().flatten() for p in teacher.parameters()])
    flat_s = torch.cat([r.flatten() for r in ref])
    assert drift.device.type == dev.type
    torch.testing.assert_close(drift.cpu(), ((flat_t - flat_s).norm() / flat_s.norm()).cpu(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dev", DEVICES)
def test_nan_guard_on_device_names_first_bad_iteration(dev):
    dev = torch.device(dev)
    guard = NonFiniteGuard(dev)
    losses = torch.tensor([1.0, 0.5, float("nan"), float("inf"), 0.1], device=dev)
    with no_host_sync(dev):
        for it in range(len(losses)):
            guard.check(losses[it], it)
    assert guard.first_bad.device.type == dev.type
    with pytest.raises(StvmError, match="iteration 2"):
        guard.raise_if_bad("adapt")
