"""chromaflow.exact: exactly rounded sums, software exp/log; checked against fractions and math."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from chromaflow import exact


def test_fsum_is_the_exactly_rounded_sum():
    x = np.random.default_rng(0).standard_normal((7, 1000)) * 10.0 ** np.arange(-3, 4)[:, None]
    for row, got in zip(x, exact.fsum(x, axis=1), strict=True):
        assert got == float(sum(Fraction(v) for v in row))
    assert exact.fsum(np.array([1e16, 1.0, -1e16])) == 1.0  # a naive left-to-right sum gives 0
    assert exact.fsum(x.T, axis=0).tolist() == exact.fsum(x, axis=1).tolist()


def test_dot_is_exact_products_exactly_summed():
    rng = np.random.default_rng(1)
    a, b = rng.random((5, 313)), rng.random(313)
    want = [float(sum(Fraction(float(u * v)) for u, v in zip(row, b, strict=True))) for row in a]
    assert exact.dot(a, b).tolist() == want
    np.testing.assert_allclose(exact.dot(a, b), a @ b, rtol=1e-14)


def test_exp_and_log_are_within_an_ulp_of_libm_and_exact_where_the_answer_is():
    x = np.random.default_rng(2).uniform(-50, 50, 500)
    e = exact.exp(x)
    assert all(abs(g - math.exp(v)) <= math.ulp(math.exp(v)) for g, v in zip(e, x, strict=True))
    p = np.abs(x) + 1e-3
    for base, fn in ((None, math.log), (2, math.log2), (10, math.log10)):
        got = exact.log(p, base=base)
        assert all(abs(g - fn(v)) <= 2 * math.ulp(fn(v)) for g, v in zip(got, p, strict=True))
    assert exact.log(np.array([8.0, 1024.0]), base=2).tolist() == [3.0, 10.0]
    assert exact.log(np.array([1e-5, 1000.0]), base=10).tolist() == [-5.0, 3.0]
    assert exact.exp(np.array([0.0]))[0] == 1.0
    with pytest.raises(ValueError, match="x > 0"):
        exact.log(np.array([1.0, 0.0]))


def test_corr_matches_numpy_and_is_nan_for_a_constant():
    rng = np.random.default_rng(3)
    x = rng.random(313)
    y = 0.3 * x + rng.random(313)
    assert exact.corr(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-14)
    assert exact.corr(x, -2 * x) == pytest.approx(-1.0, abs=1e-15)
    assert math.isnan(exact.corr(x, np.ones(313)))


def test_smoothed_prior_equals_the_direct_formula():
    """Eq. 2.4's smoothing (sigma 5 over the 313 bin centres), written here with numpy's exp and matmul."""
    from chromaflow.color import rebalance_weights, smooth_prior
    from chromaflow.color.gamut import ab_bins_numpy

    p = np.random.default_rng(4).random(313) ** 4
    p /= p.sum()
    c = ab_bins_numpy()
    k = np.exp(-((c[:, None, :] - c[None, :, :]) ** 2).sum(-1) / (2 * 5.0**2))
    want = k @ p / (k @ p).sum()
    np.testing.assert_allclose(smooth_prior(p), want, rtol=1e-13)
    w = 1.0 / (0.5 * want + 0.5 / 313)
    np.testing.assert_allclose(rebalance_weights(p), w / (want * w).sum(), rtol=1e-13)
