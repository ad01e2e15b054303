"""Suggested palette (thesis ch. 3.3.2): weighted k-means (K=9) on a predicted ab distribution.

The original interface drew 25,000 samples from the softened distribution at the clicked pixel and
ran k-means on them. The samples only ever take the Q=313 bin-centre values, so k-means on the
samples is k-means on the bin centres weighted by their sample counts; in expectation those counts
are the probabilities. We therefore run Lloyd's algorithm directly on the 313 weighted centres:
no sampling noise and ~Q/25000 of the work.

Softening: the thesis softens the distribution "to make it less peaky" without giving the factor;
we use a temperature (``probs ** (1 / temperature)``, renormalized) with default 2.0, a parameter.
"""

from __future__ import annotations

import numpy as np
import torch

from chromaflow.color.gamut import ab_bins

PALETTE_K = 9
PALETTE_TEMPERATURE = 2.0


def soften(probs: torch.Tensor, temperature: float = PALETTE_TEMPERATURE) -> torch.Tensor:
    """``probs (..., Q)`` -> ``probs ** (1/temperature)`` renormalized over the last dim."""
    if temperature <= 0:
        raise ValueError(f"palette: temperature must be > 0, got {temperature}")
    p = probs.clamp_min(0) ** (1.0 / temperature)
    return p / p.sum(-1, keepdim=True).clamp_min(1e-30)


def weighted_kmeans(
    points: torch.Tensor, weights: torch.Tensor, k: int = PALETTE_K, iters: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on weighted points, deterministic initialization (weighted farthest-point).

    Args:
        points: ``(N, D)``; weights: ``(N,)`` >= 0 (not all zero).
    Returns:
        centres ``(k', D)`` and their total weights ``(k',)`` (summing to 1), sorted by weight
        descending; ``k' <= k`` (clusters that end up empty are dropped).
    """
    if points.ndim != 2 or weights.shape != points.shape[:1]:
        raise ValueError(
            f"palette: points (N, D) and weights (N,) expected, got {tuple(points.shape)}, {tuple(weights.shape)}"
        )
    # a few hundred points: numpy's per-call overhead is far below torch's, so the loop runs in numpy
    w = np.clip(weights.detach().cpu().double().numpy(), 0, None)
    if not w.sum() > 0:
        raise ValueError("palette: the weights sum to zero")
    support = w > 0
    xs = points.detach().cpu().double().numpy()[support]
    ws = w[support] / w.sum()
    k = min(k, len(xs))
    # init: the heaviest point, then repeatedly the point maximizing weight * squared distance
    c = np.empty((k, xs.shape[1]))
    c[0] = xs[ws.argmax()]
    d2 = ((xs - c[0]) ** 2).sum(1)
    for j in range(1, k):
        c[j] = xs[(ws * d2).argmax()]
        d2 = np.minimum(d2, ((xs - c[j]) ** 2).sum(1))
    for _ in range(iters):
        assign = ((xs[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        mass = np.bincount(assign, ws, minlength=k)
        sums = np.stack([np.bincount(assign, ws * xs[:, d], minlength=k) for d in range(xs.shape[1])], 1)
        new = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], c)
        done = np.allclose(new, c, atol=1e-9)
        c = new
        if done:
            break
    assign = ((xs[:, None] - c[None]) ** 2).sum(-1).argmin(1)
    mass = np.bincount(assign, ws, minlength=k)
    keep = mass > 0
    c, mass = c[keep], mass[keep]
    order = np.argsort(-mass, kind="stable")
    return (
        torch.as_tensor(c[order], dtype=points.dtype, device=points.device),
        torch.as_tensor(mass[order], dtype=points.dtype, device=points.device),
    )


def suggest_palette(
    probs: torch.Tensor, k: int = PALETTE_K, temperature: float = PALETTE_TEMPERATURE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Suggested colours at one pixel.

    Args:
        probs: ``(Q,)`` predicted distribution over the ab bins (softmax of the distribution head).
    Returns:
        ``ab (k', 2)`` in ab units and ``weights (k',)`` summing to 1, most likely first.
    """
    bins = ab_bins().to(probs.device)
    if probs.shape != bins.shape[:1]:
        raise ValueError(f"palette: probs must have shape ({bins.shape[0]},), got {tuple(probs.shape)}")
    return weighted_kmeans(bins.double(), soften(probs.double(), temperature), k=k)


def ab_swatch(l: float, resolution: int = 221, ab_max: float = 110.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The ab gamut at lightness ``l`` (the interface's "regular ab gamut based on the lightness").

    Args:
        l: lightness in [0, 100]. resolution: pixels per side; rows go from b = +ab_max (top) to -ab_max,
        columns from a = -ab_max to +ab_max.
    Returns:
        ``rgb (3, R, R)`` float in [0, 1] and ``in_gamut (R, R)`` bool (False where Lab(l, a, b) is not a
        displayable sRGB colour; those pixels are meaningless).
    """
    from chromaflow.color.lab import lab_to_rgb

    if not 0 <= l <= 100:
        raise ValueError(f"ab_swatch: L must be in [0, 100], got {l}")
    if resolution < 2:
        raise ValueError(f"ab_swatch: resolution must be >= 2, got {resolution}")
    axis = torch.linspace(-ab_max, ab_max, resolution, dtype=torch.float64)
    b, a = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    lab = torch.stack([torch.full_like(a, float(l)), a, b])
    raw = lab_to_rgb(lab, clip=False)
    eps = 1e-6
    in_gamut = ((raw >= -eps) & (raw <= 1 + eps)).all(0)
    return raw.clamp(0, 1).float(), in_gamut
