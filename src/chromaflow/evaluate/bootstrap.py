"""Nonparametric bootstrap over images: resampling counts, percentile intervals, pooled statistics.

A resample is a row of counts ``(n,)`` (how often each image is drawn, summing to ``n``), so any statistic that
pools per-image sums (AuC histograms, correct counts) or averages per-image values is one matrix product.

    >>> import numpy as np
    >>> c = resample_counts(5, reps=3, seed=0)
    >>> c.shape, c.sum(1).tolist()
    ((3, 5), [5, 5, 5])
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_REPS = 10_000  # resamples per interval
CI_LEVEL = 0.95


def resample_counts(n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> np.ndarray:
    """``(reps, n)`` float64 draw counts of ``n`` items resampled with replacement (each row sums to ``n``)."""
    if n < 1 or reps < 1:
        raise ValueError(f"resample_counts: n and reps must be >= 1, got n={n}, reps={reps}")
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=reps).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``samples (reps,)``."""
    if not 0 < level < 1:
        raise ValueError(f"percentile_interval: level must be in (0, 1), got {level}")
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def mean_ci(values: np.ndarray, counts: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """Mean of per-image ``values (n,)`` and its bootstrap interval over the resamples ``counts (reps, n)``."""
    v = np.asarray(values, dtype=np.float64)
    if counts.shape[1] != v.shape[0]:
        raise ValueError(f"mean_ci: {v.shape[0]} values but counts for {counts.shape[1]} items")
    return (float(v.mean()), *percentile_interval(counts @ v / v.shape[0], level))
