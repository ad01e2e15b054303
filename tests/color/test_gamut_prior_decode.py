"""ab_bins / derive_ab_bins vs the reference pts_in_hull.npy; prior and Eq. 2.4; decode_ab limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.color import ab_bins, decode_ab, derive_ab_bins, load_prior, rebalance_weights, smooth_prior
from chromaflow.color.constants import Q


def test_ab_bins_equal_reference(shared_datasets):
    ref = np.load(shared_datasets / "reference_npy" / "pts_in_hull.npy")
    bins = ab_bins()
    assert bins.shape == (Q, 2) and bins.dtype == torch.float32
    np.testing.assert_array_equal(bins.numpy(), ref.astype(np.float32))


def test_derived_gamut_equals_reference(shared_datasets):
    """The rule of derive_ab_bins reproduces pts_in_hull.npy exactly: same set, same order."""
    ref = np.load(shared_datasets / "reference_npy" / "pts_in_hull.npy").astype(np.float64)
    np.testing.assert_array_equal(derive_ab_bins(), ref)
    # and the reference grid mask of the interactive code agrees too
    grid = np.load(shared_datasets / "reference_npy" / "idc_pts_grid.npy")
    mask = np.load(shared_datasets / "reference_npy" / "idc_in_hull.npy").astype(bool)
    np.testing.assert_array_equal(grid[mask], ref)


def test_derived_gamut_rule_is_not_trivial():
    """A smaller reach (cells hit directly) gives fewer bins: the reach of 10 is what the reference used."""
    assert len(derive_ab_bins(reach=5.0)) < Q


@pytest.mark.slow
def test_surface_hull_equals_full_cube_hull():
    from scipy.spatial import ConvexHull

    from chromaflow.color import rgb_to_lab
    from chromaflow.color.gamut import srgb_surface_ab

    v = torch.arange(2**24, dtype=torch.int64)
    rgb = torch.stack(((v >> 16) & 255, (v >> 8) & 255, v & 255)).reshape(3, 1, -1).double() / 255
    full = rgb_to_lab(rgb)[1:].reshape(2, -1).T.numpy()
    assert ConvexHull(full).volume == pytest.approx(ConvexHull(srgb_surface_ab()).volume, rel=1e-12)


def test_shipped_prior(shared_datasets):
    p = load_prior()
    ref = np.load(shared_datasets / "reference_npy" / "prior_probs_imagenet_transcribed.npy")
    assert p.shape == (Q,) and p.dtype == torch.float64
    np.testing.assert_allclose(p.numpy(), ref / ref.sum(), rtol=1e-12)
    assert int(p.argmax()) == int(np.flatnonzero((ab_bins() == 0).all(1))[0])  # peak at ab = (0, 0)


def test_load_prior_path(tmp_path):
    np.save(tmp_path / "p.npy", np.full(Q, 2.0))
    torch.testing.assert_close(load_prior(tmp_path / "p.npy"), torch.full((Q,), 1.0 / Q, dtype=torch.float64))
    np.save(tmp_path / "bad.npy", np.ones(5))
    with pytest.raises(ValueError, match=r"bad.npy.*\(313,\)"):
        load_prior(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_prior(tmp_path / "nope.npy")


def test_smooth_prior_matches_explicit_sum():
    rng = np.random.default_rng(0)
    p = rng.random(Q)
    p /= p.sum()
    c = ab_bins(dtype=torch.float64).numpy()
    ref = np.array([sum(p[j] * np.exp(-np.sum((c[q] - c[j]) ** 2) / 50.0) for j in range(Q)) for q in range(Q)])
    np.testing.assert_allclose(smooth_prior(p, sigma=5.0), ref / ref.sum(), rtol=1e-10)
    np.testing.assert_allclose(smooth_prior(p, sigma=0.0), p, rtol=1e-12)
    one_hot = np.eye(Q)[0]
    assert smooth_prior(one_hot)[0] < 1.0  # mass spreads to neighbours


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0])
def test_rebalance_normalization(lam):
    p = load_prior()
    w = rebalance_weights(p, lam=lam)
    assert isinstance(w, torch.Tensor) and w.shape == (Q,)
    ps = smooth_prior(p)
    torch.testing.assert_close((ps * w).sum(), torch.tensor(1.0, dtype=torch.float64))
    expected = 1.0 / ((1 - lam) * ps + lam / Q)  # Eq. 2.4 up to the constant
    torch.testing.assert_close(w / w[0], expected / expected[0])


def test_smoothing_and_rebalancing_defaults_are_eq_2_4_with_sigma_5_and_lambda_half():
    """Defaults against Eq. 2.4 written out with the thesis's sigma = 5 and lambda = 1/2 as literals."""
    p = load_prior().numpy()
    c = ab_bins(dtype=torch.float64).numpy()
    g = np.exp(-((c[:, None, :] - c[None]) ** 2).sum(-1) / (2 * 5.0**2))
    ps = g @ p / (g @ p).sum()
    np.testing.assert_allclose(smooth_prior(p), ps, rtol=1e-10)
    w = 1.0 / (0.5 * ps + 0.5 / 313)
    np.testing.assert_allclose(rebalance_weights(p), w / (ps * w).sum(), rtol=1e-10)


def test_rebalance_limits():
    p = load_prior().numpy()
    np.testing.assert_allclose(rebalance_weights(p, lam=1.0), np.ones(Q), rtol=1e-12)
    ps = smooth_prior(p)
    np.testing.assert_allclose(rebalance_weights(p, lam=0.0), 1.0 / (Q * ps), rtol=1e-10)
    w = rebalance_weights(p)  # rare colours weigh more
    assert w[np.argmin(ps)] > 1 > w[np.argmax(ps)]
    with pytest.raises(ValueError, match=r"^lam: expected in \[0, 1\], got 1.5$"):
        rebalance_weights(p, lam=1.5)
    with pytest.raises(ValueError, match=r"\(313,\)"):
        rebalance_weights(np.ones(4))
    with pytest.raises(ValueError, match=r"^sigma: expected >= 0, got -1.0$"):
        smooth_prior(p, sigma=-1.0)
    holes = np.where(np.arange(Q) % 2 == 0, p, 0.0)  # unsmoothed, lam 0: 1 / p~ is infinite on the holes
    with pytest.raises(ValueError, match=r"^rebalance_weights: lam=0.0 and the smoothed prior has zeros; weights wo"):
        rebalance_weights(holes, lam=0.0, sigma=0.0)


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, Q, 3, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_decode_mode_and_mean():
    z = _logits()
    c = ab_bins(dtype=torch.float64).numpy()
    zz = z.permute(0, 2, 3, 1).numpy()
    mode = decode_ab(z, method="mode").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(mode, c[zz.argmax(-1)])
    prob = np.exp(zz - zz.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    np.testing.assert_allclose(decode_ab(z, method="mean").permute(0, 2, 3, 1).numpy(), prob @ c, rtol=1e-10)


def test_annealed_mean_limits():
    z = _logits(1)
    torch.testing.assert_close(decode_ab(z, T=1.0), decode_ab(z, method="mean"))
    torch.testing.assert_close(decode_ab(z, T=1e-3), decode_ab(z, method="mode"), atol=1e-6, rtol=0)
    # Eq. 2.5 literally: re-temper the probabilities, then take the mean
    zz = torch.softmax(z, 1)
    ft = torch.exp(torch.log(zz) / 0.38)
    ft = ft / ft.sum(1, keepdim=True)
    ref = torch.einsum("bqhw,qc->bchw", ft, ab_bins(dtype=torch.float64))
    torch.testing.assert_close(decode_ab(z), ref)
    # lower T -> more saturated (further from the mean) on average
    sat = [decode_ab(z, T=t).norm(dim=1).mean() for t in (1.0, 0.38, 0.1)]
    assert sat[0] < sat[1] < sat[2]


def test_decode_exceptions_and_shape():
    assert decode_ab(torch.randn(1, Q, 2, 2, dtype=torch.bfloat16)).shape == (1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"^logits: expected shape \(B, 313, H, W\), got \(1, 312, 2, 2\)$"):
        decode_ab(torch.zeros(1, Q - 1, 2, 2))
    with pytest.raises(
        ValueError, match=r"^method: expected one of \('mode', 'mean', 'annealed_mean'\), got 'median'$"
    ):
        decode_ab(torch.zeros(1, Q, 1, 1), method="median")
    with pytest.raises(ValueError, match=r"^T: expected > 0, got 0.0$"):
        decode_ab(torch.zeros(1, Q, 1, 1), T=0.0)
    with pytest.raises(TypeError, match=r"^logits: expected a torch.Tensor, got ndarray$"):
        decode_ab(np.zeros((1, Q, 1, 1)))


def test_bin_centres_and_smoothing_kernel_are_built_once():
    from chromaflow.color import decode, prior

    assert decode._centres(torch.device("cpu"), torch.float32) is decode._centres(torch.device("cpu"), torch.float32)
    k = prior._gaussian_kernel(5.0)
    assert k is prior._gaussian_kernel(5.0) and not k.flags.writeable


def test_prior_input_rules_and_their_messages(tmp_path):
    """A prior is a finite, non-negative (313,) array with positive mass; a .npy is never unpickled."""
    ok = np.full(Q, 1.0 / Q)
    for bad, msg in [
        (ok[:-1], r"^p: expected shape \(313,\), got \(312,\)$"),
        (np.where(np.arange(Q) == 7, -1e-9, ok), r"^p: expected finite non-negative values$"),
        (np.where(np.arange(Q) == 7, np.nan, ok), r"^p: expected finite non-negative values$"),
        (np.zeros(Q), r"^p: sums to 0, not a distribution$"),
    ]:
        with pytest.raises(ValueError, match=msg):
            smooth_prior(bad)
    with pytest.raises(TypeError, match=r"^p: expected a numpy array or torch.Tensor, got list$"):
        smooth_prior(ok.tolist())
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}] * Q, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_prior(pickled)
    with pytest.raises(FileNotFoundError, match=r"^prior: no such file '.*nope.npy'$"):
        load_prior(tmp_path / "nope.npy")
    with pytest.raises(ValueError, match=r"^prior .*short.npy: expected shape \(313,\), got \(3,\)$"):
        np.save(tmp_path / "short.npy", np.ones(3))
        load_prior(tmp_path / "short.npy")
    assert load_prior().dtype == torch.float64
