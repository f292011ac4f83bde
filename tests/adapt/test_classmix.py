"""stvm.adapt.classmix: MOCM patch buffers (FIFO, acceptance by mean distance) and pasting."""

from __future__ import annotations

import pytest
import torch

from stvm.adapt.classmix import PatchBuffers, to_uint8

H = W = 4


def const_images(values: list[int]) -> torch.Tensor:
    return torch.stack([torch.full((3, H, W), v, dtype=torch.uint8) for v in values])


def halves(b: int, left: int, right: int) -> torch.Tensor:
    pred = torch.full((b, H, W), left, dtype=torch.long)
    pred[:, :, W // 2 :] = right
    return pred


def test_push_accepts_by_mean_distance_and_stores_tuple():
    buf = PatchBuffers(3, size=2, height=H, width=W)
    pred = halves(1, 0, 1)
    dist = torch.where(pred == 0, 0.5, 0.9)
    dist[0, 0, 0] = 1.2  # class 0 mean = (1.2 + 7 * 0.5) / 8 = 0.5875 < 0.8 still accepted
    rel = torch.rand(1, H, W, generator=torch.Generator().manual_seed(0))
    img = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    accept = buf.push(img, pred, rel, dist, tau_mocm=0.8)
    assert accept.tolist() == [[True, False, False]]
    assert buf.count.tolist() == [1, 0, 0] and buf.ptr.tolist() == [1, 0, 0]
    assert torch.equal(buf.mask[0, 0], pred[0] == 0)
    assert torch.equal(buf.image[0, 0], (img[0] * 255).round().to(torch.uint8))
    assert torch.allclose(buf.reliability[0, 0].float(), rel[0], atol=1e-3)
    assert not buf.mask[1].any()  # rejected class 1 left no trace
    assert buf.fill_fraction().item() == pytest.approx((1 / 2) / 3)


def test_push_ignores_out_of_range_labels_and_min_pixels():
    buf = PatchBuffers(2, size=2, height=H, width=W)
    pred = halves(1, 255, 1)
    pred[0, 0, 3] = 0  # a single class-0 pixel
    accept = buf.push(
        const_images([9]), pred, torch.ones(1, H, W), torch.zeros(1, H, W), 0.8, min_pixels=2
    )
    assert accept.tolist() == [[False, True]]
    assert torch.equal(buf.mask[1, 0], pred[0] == 1)


def test_fifo_eviction_order():
    buf = PatchBuffers(2, size=2, height=H, width=W)
    pred, zero = torch.zeros(1, H, W, dtype=torch.long), torch.zeros(1, H, W)
    for v in (10, 20, 30):
        buf.push(const_images([v]), pred, zero, zero, 0.8)
    assert buf.count.tolist() == [2, 0] and buf.ptr.tolist() == [1, 0]
    assert buf.image[0, :, 0, 0, 0].tolist() == [30, 20]  # 10 (oldest) evicted
    buf.push(const_images([40]), pred, zero, zero, 0.8)
    assert buf.image[0, :, 0, 0, 0].tolist() == [30, 40]  # then 20
    assert buf.ptr.tolist() == [0, 0]


def test_two_same_class_patches_in_one_batch():
    buf = PatchBuffers(3, size=3, height=H, width=W)
    pred = torch.stack([halves(1, 1, 0)[0], halves(1, 1, 2)[0]])
    zero = torch.zeros(2, H, W)
    buf.push(const_images([5, 6]), pred, zero, zero, 0.8)
    buf.push(const_images([7, 8]), pred, zero, zero, 0.8)
    assert buf.count.tolist() == [2, 3, 2] and buf.ptr.tolist() == [2, 1, 2]
    assert buf.image[1, :, 0, 0, 0].tolist() == [
        8,
        6,
        7,
    ]  # 5, 6, 7, 8 in batch order; 5 evicted by 8
    assert buf.image[0, :2, 0, 0, 0].tolist() == [5, 7] and buf.image[2, :2, 0, 0, 0].tolist() == [
        6,
        8,
    ]
    small = PatchBuffers(1, size=1, height=H, width=W)
    small.push(const_images([1, 2]), torch.zeros(2, H, W, dtype=torch.long), zero, zero, 0.8)
    assert small.image[0, 0, 0, 0, 0].item() == 2 and small.count.item() == 1  # last writer kept


def test_state_dict_round_trip_and_memory(tmp_path):
    buf = PatchBuffers(3, size=2, height=H, width=W)
    g = torch.Generator().manual_seed(2)
    pred = torch.randint(0, 3, (2, H, W), generator=g)
    buf.push(
        torch.rand(2, 3, H, W, generator=g),
        pred,
        torch.rand(2, H, W, generator=g),
        torch.zeros(2, H, W),
        0.8,
    )
    path = tmp_path / "buf.pt"
    torch.save(buf.state_dict(), path)
    other = PatchBuffers(3, size=2, height=H, width=W)
    other.load_state_dict(torch.load(path, weights_only=True))
    for name, t in buf.state_dict().items():
        assert torch.equal(other.state_dict()[name], t), name
    stores = sum(
        t.numel() * t.element_size() for n, t in buf.state_dict().items() if n.endswith("_store")
    )
    assert stores == PatchBuffers.storage_bytes(3, 2, H, W)
    assert PatchBuffers.storage_bytes(19, 50, 512, 512) == (19 * 50 + 1) * (3 + 1 + 2) * 512 * 512


def filled(n_classes: int = 5, seed: int = 0) -> PatchBuffers:
    """One patch per class: random mask, image value 10 * (c + 1), reliability 0.1 * (c + 1)."""
    g = torch.Generator().manual_seed(seed)
    buf = PatchBuffers(n_classes, size=2, height=8, width=8)
    for c in range(n_classes):
        pred = torch.where(torch.rand(1, 8, 8, generator=g) < 0.4, c, 255)
        pred[0, 0, 0] = c
        buf.push(
            torch.full((1, 3, 8, 8), 10 * (c + 1), dtype=torch.uint8),
            pred,
            torch.full((1, 8, 8), 0.1 * (c + 1)),
            torch.zeros(1, 8, 8),
            0.8,
        )
    return buf


def test_paste_labels_and_reliability_follow_the_image():
    buf = filled()
    b = 6
    imgs, pseudo, weight = (
        torch.zeros(b, 3, 8, 8),
        torch.full((b, 8, 8), 99),
        torch.full((b, 8, 8), -1.0),
    )
    oi, op, ow, pasted = buf.paste(imgs, pseudo, weight, n=3, generator=torch.Generator().manual_seed(0))
    changed = (oi != imgs).any(1)
    assert changed.any() and torch.equal(changed, pasted)  # the coverage map is what changed
    assert torch.equal(changed, op != 99) and torch.equal(changed, ow != -1.0)
    c = op[changed]
    assert (c >= 0).all() and (c < 5).all()
    assert torch.allclose(
        oi.permute(0, 2, 3, 1)[changed], (10 * (c[:, None] + 1)).float().expand(-1, 3) / 255
    )
    assert torch.allclose(ow[changed], (0.1 * (c + 1)).to(torch.float16).float())
    _, h_idx, w_idx = changed.nonzero().t()
    assert buf.mask[c, 0, h_idx, w_idx].all()  # pasted pixels lie in the class's patch mask
    per_image = [set(op[i][changed[i]].tolist()) for i in range(b)]
    assert all(1 <= len(s) <= 3 for s in per_image)
    assert len({frozenset(s) for s in per_image}) > 1  # choices differ between images


def test_paste_fewer_nonempty_classes_than_n_and_sampling_among_stored():
    buf = PatchBuffers(4, size=3, height=8, width=8)
    pred = torch.zeros(3, 8, 8, dtype=torch.long)
    pred[:, 4:] = 255
    buf.push(const_images8([1, 2, 3]), pred, torch.ones(3, 8, 8), torch.zeros(3, 8, 8), 0.8)
    imgs = torch.zeros(60, 3, 8, 8)
    oi, op, _, _ = buf.paste(
        imgs,
        torch.full((60, 8, 8), 7),
        torch.zeros(60, 8, 8),
        n=10,
        generator=torch.Generator().manual_seed(1),
    )
    assert (op[:, :4] == 0).all() and (op[:, 4:] == 7).all()
    assert set((oi[:, 0, 0, 0] * 255).round().long().tolist()) == {
        1,
        2,
        3,
    }  # each stored patch gets drawn


def const_images8(values: list[int]) -> torch.Tensor:
    return torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in values])


def test_paste_empty_buffers_or_n0_return_inputs_unchanged():
    g = torch.Generator().manual_seed(3)
    imgs, pseudo, weight = (
        torch.rand(2, 3, 8, 8, generator=g),
        torch.randint(0, 5, (2, 8, 8), generator=g),
        torch.rand(2, 8, 8, generator=g),
    )
    empty = PatchBuffers(5, size=2, height=8, width=8)
    from_empty = empty.paste(imgs, pseudo, weight, 4, torch.Generator().manual_seed(0))
    with_n0 = filled().paste(imgs, pseudo, weight, 0, torch.Generator())
    for out in (from_empty, with_n0):
        assert all(torch.equal(o, r) for o, r in zip(out[:3], (imgs, pseudo, weight), strict=True))
        assert not out[3].any()


def test_paste_deterministic_given_generator():
    buf = filled(seed=4)
    imgs, pseudo, weight = (
        torch.zeros(4, 3, 8, 8),
        torch.zeros(4, 8, 8, dtype=torch.long),
        torch.ones(4, 8, 8),
    )
    a = buf.paste(imgs, pseudo, weight, 2, torch.Generator().manual_seed(9))
    b = buf.paste(imgs, pseudo, weight, 2, torch.Generator().manual_seed(9))
    c = buf.paste(imgs, pseudo, weight, 2, torch.Generator().manual_seed(10))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_no_host_sync_on_meta_device():
    """push/paste run on the data-less meta device, so they never read data back to the host."""
    buf = PatchBuffers(19, size=3, height=16, width=16, device="meta")
    pred = torch.zeros(2, 16, 16, dtype=torch.long, device="meta")
    plane = torch.rand(2, 16, 16, device="meta")
    accept = buf.push(torch.rand(2, 3, 16, 16, device="meta"), pred, plane, plane, 0.8)
    out = buf.paste(torch.rand(2, 3, 16, 16, device="meta"), pred, plane, 10, torch.Generator())
    assert (
        accept.shape == (2, 19)
        and out[0].shape == (2, 3, 16, 16)
        and buf.fill_fraction().shape == ()
    )


def test_to_uint8_rounds_clamps_and_passes_uint8_through():
    f = torch.tensor([0.0, 0.3 / 255, 1.7 / 255, 0.999, 1.2, -0.1])
    assert to_uint8(f).tolist() == [0, 0, 2, 255, 255, 0]  # rounded, then clamped to 0..255
    u = torch.tensor([3, 250], dtype=torch.uint8)
    assert to_uint8(u) is u
