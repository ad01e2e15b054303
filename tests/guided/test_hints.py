"""Hint simulation (thesis ch. 3.3.2): statistics on fixed seeds, patch values vs a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chromaflow.data.hints import (
    ab_histogram,
    global_hints,
    hsv_saturation,
    patch_means,
    simulate_local_hints,
)


def _ab(b=4, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 2, h, w, generator=g) - 0.5) * 200


def test_mean_count_is_geometric():
    """The number of revealed patches has mean (1-p)/p = 7 (counted on 1x1 patches, no overlap)."""
    ab = _ab(b=4000, h=64, w=64)
    hint, mask = simulate_local_hints(ab, patch_sizes=(1,), full_reveal=0.0, generator=torch.Generator().manual_seed(1))
    counts = mask.flatten(1).sum(1)
    # overlaps of 1x1 points are rare on 64x64 but exist: the count is a (tight) lower bound
    p = 1 / 8
    assert counts.mean().item() == pytest.approx((1 - p) / p, rel=0.05)
    # P(N = 0) = p
    assert (counts == 0).float().mean().item() == pytest.approx(p, abs=0.02)


def test_patch_values_equal_region_means():
    ab = _ab(b=3, h=24, w=24, seed=3)
    b = torch.tensor([0, 1, 2, 2])
    y = torch.tensor([0, 5, 10, 15])
    x = torch.tensor([3, 0, 7, 15])
    s = torch.tensor([1, 4, 9, 9])
    got = patch_means(ab, b, y, x, s)
    for i in range(4):
        ref = ab[b[i], :, y[i] : y[i] + s[i], x[i] : x[i] + s[i]].mean((1, 2))
        torch.testing.assert_close(got[i], ref, rtol=0, atol=1e-4)


def test_revealed_patches_hold_their_patch_mean():
    """With one point per image, the revealed square is constant and equals the GT mean over it."""
    ab = _ab(b=64, h=32, w=32, seed=5)
    hint, mask = simulate_local_hints(ab, p=0.5, full_reveal=0.0, generator=torch.Generator().manual_seed(2))
    checked = 0
    for i in range(ab.shape[0]):
        m = mask[i, 0].bool()
        n = int(m.sum())
        if n == 0:
            continue
        ys, xs = torch.nonzero(m, as_tuple=True)
        side = int(math.isqrt(n))
        square = side * side == n and (ys.max() - ys.min() + 1) == side and (xs.max() - xs.min() + 1) == side
        if not square:  # several overlapping points: skip, covered by the next test
            continue
        region = ab[i, :, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        vals = hint[i][:, m]
        torch.testing.assert_close(
            vals, region.mean((1, 2), keepdim=True).reshape(2, 1).expand_as(vals), atol=1e-4, rtol=0
        )
        checked += 1
    assert checked > 10
    assert torch.all(hint[mask.expand_as(hint) == 0] == 0)


def test_patch_sizes_and_centre_bias():
    ab = _ab(b=2000, h=64, w=64, seed=7)
    hint, mask = simulate_local_hints(ab, full_reveal=0.0, generator=torch.Generator().manual_seed(3))
    m = mask[:, 0].sum(0)
    centre = m[24:40, 24:40].mean()
    border = torch.cat([m[:4].flatten(), m[-4:].flatten()]).mean()
    assert centre > 3 * border  # Gaussian around the centre


def test_full_reveal_rate():
    ab = _ab(b=20000, h=8, w=8, seed=9)
    _, mask = simulate_local_hints(ab, p=1.0, full_reveal=0.01, generator=torch.Generator().manual_seed(4))
    full = (mask.flatten(1).sum(1) == 64).float().mean().item()
    assert full == pytest.approx(0.01, abs=0.003)


def test_seeded_and_reproducible():
    ab = _ab()
    a = simulate_local_hints(ab, generator=torch.Generator().manual_seed(11))
    b = simulate_local_hints(ab, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        simulate_local_hints(torch.zeros(2, 3, 8, 8))
    with pytest.raises(TypeError):
        simulate_local_hints(np.zeros((2, 2, 8, 8)))


def test_saturation_matches_skimage():
    import skimage.color as skimage

    rgb = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = [skimage.rgb2hsv(im.permute(1, 2, 0).numpy())[..., 1].mean() for im in rgb]
    np.testing.assert_allclose(hsv_saturation(rgb).numpy(), ref, atol=1e-10)


def test_histogram_sums_to_one_and_global_vector_layout():
    ab = _ab(b=2, h=32, w=32)
    hist = ab_histogram(ab)
    torch.testing.assert_close(hist.sum(1), torch.ones(2))
    rgb = torch.rand(2, 3, 32, 32)
    g = global_hints(ab, rgb, reveal_hist=1.0, reveal_sat=0.0, generator=torch.Generator().manual_seed(0))
    assert g.shape == (2, 313 + 3)
    torch.testing.assert_close(g[:, :313], hist)
    assert torch.all(g[:, 313] == 1) and torch.all(g[:, 314] == 0) and torch.all(g[:, 315] == 0)
