"""PNG plots of the ab statistics, like the thesis's Fig. 2.3 (b) and (c), and the L histogram."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from chromaflow import exact  # noqa: E402
from chromaflow.color.constants import AB_MIN, GRID, GRID_SIZE  # noqa: E402
from chromaflow.io import atomic_path  # noqa: E402

EXTENT = [AB_MIN - GRID / 2, AB_MIN + GRID * (GRID_SIZE - 0.5)] * 2  # a from left to right, b from bottom to top


def to_grid(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Scatter ``values (Q,)`` at bin centres ``bins (Q, 2)`` (a, b) onto a ``(23, 23)`` grid ``[b, a]``; NaN off-gamut."""
    grid = np.full((GRID_SIZE, GRID_SIZE), np.nan)
    ia = np.rint((bins[:, 0] - AB_MIN) / GRID).astype(int)
    ib = np.rint((bins[:, 1] - AB_MIN) / GRID).astype(int)
    grid[ib, ia] = values
    return grid


def _log10(p: np.ndarray) -> np.ndarray:
    """log10 where ``p > 0``, else NaN; the same bits on every CPU, so the PNG bytes DVC hashes are too."""
    out = np.full(p.shape, np.nan)
    out[p > 0] = exact.log(p[p > 0], base=10)
    return out


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_prior(prior: np.ndarray, bins: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """Fig. 2.3(b): log10 of the empirical ab distribution over the in-gamut bins."""
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(to_grid(_log10(prior), bins), origin="lower", extent=EXTENT, cmap="jet")
    ax.set_xlabel("a")
    ax.set_ylabel("b")
    ax.set_title(title or "log10 P(ab)")
    fig.colorbar(im, ax=ax, shrink=0.85)
    _save(fig, path)


def plot_prior_given_l(cond: np.ndarray, band_edges: np.ndarray, bins: np.ndarray, path: str | os.PathLike) -> None:
    """Fig. 2.3(c): log10 P(ab | L in band) per L band; ``cond (bands, Q)``, ``band_edges (bands + 1,)``."""
    n = cond.shape[0]
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(to_grid(_log10(cond[k]), bins), origin="lower", extent=EXTENT, cmap="jet")
        ax.set_title(f"L in [{band_edges[k]:.0f}, {band_edges[k + 1]:.0f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("log10 P(ab | L)")
    _save(fig, path)


def plot_l_hist(hist: np.ndarray, edges: np.ndarray, path: str | os.PathLike) -> None:
    """Histogram of L over [0, 100] (pixel fraction per bin)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    total = max(int(hist.sum()), 1)
    ax.bar(edges[:-1], hist / total, width=np.diff(edges), align="edge")
    ax.set_xlabel("L")
    ax.set_ylabel("fraction of pixels")
    ax.set_xlim(edges[0], edges[-1])
    _save(fig, path)
