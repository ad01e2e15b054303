"""Nonparametric bootstrap over images: resampling counts, percentile intervals, pooled statistics.

A resample is a row of counts ``(n,)`` (how often each image is drawn, summing to ``n``), so any statistic that
pools per-image sums (AuC histograms, correct counts) or averages per-image values is one matrix product. The
products are integer arithmetic (:func:`resampled_sum`), so the intervals, which DVC hashes, are the same bits on
every CPU: a float BLAS product sums in a CPU-dependent order.

    >>> import numpy as np
    >>> c = resample_counts(5, reps=3, seed=0)
    >>> c.shape, c.sum(1).tolist()
    ((3, 5), [5, 5, 5])
"""

from __future__ import annotations

import numpy as np

from chromaflow.exact import fsum

BOOTSTRAP_REPS = 10_000  # resamples per interval
CI_LEVEL = 0.95
FIXED_POINT_BITS = 24  # per-image float values are summed as multiples of 2**-24 (exact integer sums)


def resample_counts(n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> np.ndarray:
    """``(reps, n)`` float64 draw counts of ``n`` items resampled with replacement (each row sums to ``n``)."""
    if n < 1 or reps < 1:
        raise ValueError(f"resample_counts: n and reps must be >= 1, got n={n}, reps={reps}")
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=reps).astype(np.float64)


def fixed_point(values: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """``values`` (finite floats) as int64 multiples of ``1 / scale`` and the ``scale``: 1 for integer values
    (histogram counts, hits), ``2**FIXED_POINT_BITS`` otherwise (steps of 6e-8, far below the 1e-6 the reports
    keep). Raises ``ValueError`` when a value is not finite or a sum of ``n`` resampled values could overflow."""
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ValueError("fixed_point: values must be finite")
    scale = 1.0 if np.array_equal(v, np.round(v)) else float(2**FIXED_POINT_BITS)
    fixed = np.round(v * scale)
    if np.abs(fixed).max(initial=0.0) * max(n, 1) >= 2.0**62:
        raise ValueError(f"fixed_point: values up to {np.abs(v).max():g} would overflow an exact sum of {n}")
    return fixed.astype(np.int64), scale


def resampled_sum(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``counts (reps, n) @ values (n,) or (n, K)`` in exact integer arithmetic (:func:`fixed_point`), so the
    result is the same bits on every machine; float64 ``(reps,)`` or ``(reps, K)``."""
    fixed, scale = fixed_point(values, counts.shape[1])
    return (np.asarray(counts).astype(np.int64) @ fixed).astype(np.float64) / scale


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
    mean = fsum(v) / v.shape[0]  # exactly rounded: the same bits on every CPU, like the resampled sums
    return (mean, *percentile_interval(resampled_sum(counts, v) / v.shape[0], level))
