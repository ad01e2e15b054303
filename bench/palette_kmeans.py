"""Suggested-palette latency per click: ours (weighted k-means on the 313 bins) vs the original
(25,000 samples drawn from the distribution, scikit-learn KMeans, K=9), on the same distributions.

    .venv/bin/python bench/palette_kmeans.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from chromaflow.color import ab_bins_numpy
from chromaflow.color.palette import PALETTE_K, soften, suggest_palette

N_CLICKS = 20
N_SAMPLES = 25_000


def sklearn_palette(probs: torch.Tensor, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The original GUI's suggestion at one pixel: ``N_SAMPLES`` ab draws from ``probs (Q,)`` (softened as ours),
    scikit-learn KMeans with K = ``PALETTE_K``. Returns ``samples (N, 2)`` and ``centers (K, 2)`` in ab units."""
    q = soften(probs).numpy()
    samples = ab_bins_numpy()[rng.choice(len(q), N_SAMPLES, p=q / q.sum())]
    return samples, KMeans(PALETTE_K, n_init=1, random_state=0).fit(samples).cluster_centers_


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    threadpool_limits(1)  # sklearn's OpenMP too: both sides on one thread
    dists = [torch.softmax(torch.randn(313, dtype=torch.float64) * 3, 0) for _ in range(N_CLICKS)]
    t0 = time.perf_counter()
    ours = [suggest_palette(p) for p in dists]
    t_ours = (time.perf_counter() - t0) / N_CLICKS

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    costs = []
    for p, (c_ours, _) in zip(dists, ours, strict=True):
        samples, centers = sklearn_palette(p, rng)
        d_ref = ((samples[:, None] - centers[None]) ** 2).sum(-1).min(1).mean()
        d_ours = ((samples[:, None] - c_ours.numpy()[None]) ** 2).sum(-1).min(1).mean()
        costs.append(d_ours / d_ref)
    t_ref = (time.perf_counter() - t0) / N_CLICKS
    print(
        f"palette per click: ours {t_ours * 1e3:.2f} ms, sklearn KMeans on {N_SAMPLES} samples {t_ref * 1e3:.1f} ms, "
        f"speed-up {t_ref / t_ours:.1f}x"
    )
    print(f"k-means cost on the samples, ours / sklearn: median {np.median(costs):.3f}, max {np.max(costs):.3f}")


if __name__ == "__main__":
    main()
