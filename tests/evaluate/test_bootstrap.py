"""Bootstrap helpers against a plain resampling loop and the normal-theory interval."""

import numpy as np
import pytest

from chromaflow.evaluate.bootstrap import mean_ci, percentile_interval, resample_counts


def test_counts_are_resamples_with_replacement():
    c = resample_counts(7, reps=500, seed=3)
    assert c.shape == (500, 7) and (c.sum(1) == 7).all() and (c >= 0).all()
    assert abs(c.mean() - 1.0) < 1e-12 and c.max() > 1  # some item drawn twice somewhere


def test_mean_ci_matches_a_resampling_loop_in_distribution_and_normal_theory():
    x = np.random.default_rng(0).normal(10.0, 2.0, size=400)
    m, lo, hi = mean_ci(x, resample_counts(400, reps=4000, seed=1))
    rng = np.random.default_rng(2)
    loop = [x[rng.integers(0, 400, 400)].mean() for _ in range(4000)]
    lo2, hi2 = percentile_interval(np.array(loop))
    half = 1.96 * x.std(ddof=1) / np.sqrt(400)
    assert m == pytest.approx(x.mean())
    assert lo == pytest.approx(m - half, abs=0.04) and hi == pytest.approx(m + half, abs=0.04)
    assert lo == pytest.approx(lo2, abs=0.04) and hi == pytest.approx(hi2, abs=0.04)


def test_bad_input_named():
    with pytest.raises(ValueError, match="n and reps must be >= 1"):
        resample_counts(0)
    with pytest.raises(ValueError, match="level must be in"):
        percentile_interval(np.zeros(3), 1.5)
    with pytest.raises(ValueError, match="3 values but counts for 2 items"):
        mean_ci(np.zeros(3), np.ones((4, 2)))


def test_resampled_sums_are_exact_integer_arithmetic_not_a_float_product():
    """The pooled sums equal exactly-rounded fsum of the fixed-point values, for any summation order."""
    import math

    from chromaflow.evaluate.bootstrap import FIXED_POINT_BITS, fixed_point, resampled_sum

    rng = np.random.default_rng(0)
    v = rng.normal(20.0, 5.0, 300) * np.array([1.0, 1e-9, 1e9])[rng.integers(0, 3, 300)] / 1e3  # mixed magnitudes
    c = resample_counts(300, reps=50, seed=2)
    got = resampled_sum(c, v)
    q = np.round(v * 2.0**FIXED_POINT_BITS) / 2.0**FIXED_POINT_BITS
    want = np.array([math.fsum((row * q).tolist()) for row in c])
    np.testing.assert_array_equal(got, want)
    # the same bits whatever the order of the items
    perm = rng.permutation(300)
    np.testing.assert_array_equal(resampled_sum(c[:, perm], v[perm]), got)
    # integer values are summed as integers, unscaled
    ints, scale = fixed_point(np.array([3.0, 0.0, 7.0]), n=3)
    assert scale == 1.0 and ints.dtype == np.int64
    with pytest.raises(ValueError, match="finite"):
        resampled_sum(c, np.full(300, np.nan))
    with pytest.raises(ValueError, match="overflow"):
        resampled_sum(c, np.full(300, 1e17))
