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
