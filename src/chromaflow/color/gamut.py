"""The quantized ab gamut: the Q=313 in-gamut bin centres of the grid of size 10 (thesis Fig. 2.3a).

The bins ship inside the package as ``assets/pts_in_hull.npy`` (a copy of the original colorization
code's ``pts_in_hull.npy``, MIT), so nothing outside the package is needed at run time.
:func:`ab_bins` loads it; :func:`derive_ab_bins` re-derives the set from the sRGB gamut (see its
docstring for the rule and how it relates to the shipped array).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from chromaflow.color.constants import AB_MIN, GRID, GRID_SIZE, Q

__all__ = ["ab_bins", "ab_bins_numpy", "grid_index", "derive_ab_bins", "srgb_surface_ab"]


@functools.lru_cache(maxsize=1)
def ab_bins_numpy() -> np.ndarray:
    """The 313 bin centres as a read-only ``(Q, 2)`` float64 array (a, b), order of ``pts_in_hull.npy``."""
    with resources.files("chromaflow.color").joinpath("assets/pts_in_hull.npy").open("rb") as f:
        pts = np.load(f, allow_pickle=False).astype(np.float64)
    if pts.shape != (Q, 2):
        raise ValueError(f"assets/pts_in_hull.npy: expected shape ({Q}, 2), got {pts.shape}")
    pts.setflags(write=False)
    return pts


def ab_bins(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 313 in-gamut ab bin centres, ``(Q, 2)`` (a, b) in [-110, 110], same order as ``pts_in_hull.npy``."""
    return torch.tensor(ab_bins_numpy(), dtype=dtype, device=device)


def grid_index(ab: np.ndarray) -> np.ndarray:
    """Integer grid coordinates ``(..., 2)`` in [0, GRID_SIZE) of bin centres ``ab (..., 2)`` (exact multiples of 10)."""
    return np.rint((np.asarray(ab, dtype=np.float64) - AB_MIN) / GRID).astype(np.int64)


def srgb_surface_ab() -> np.ndarray:
    """(a, b) of every uint8 sRGB colour on the surface of the RGB cube, ``(N, 2)`` float64 (N = 390,152).

    The ab projection of the sRGB gamut is the projection of the cube's surface, so its convex hull
    equals that of all 2^24 colours (checked in the tests).
    """
    from chromaflow.color.lab import rgb_to_lab

    v = torch.arange(256, dtype=torch.float64) / 255.0
    x, y = torch.meshgrid(v, v, indexing="ij")
    faces = []
    for const in (0.0, 1.0):
        c = torch.full_like(x, const)
        faces += [torch.stack((c, x, y)), torch.stack((x, c, y)), torch.stack((x, y, c))]
    lab = rgb_to_lab(torch.cat(faces, dim=-1))  # (3, 256, 6 * 256)
    return lab[1:].reshape(2, -1).T.numpy()


def derive_ab_bins(ab: np.ndarray | None = None, reach: float = GRID) -> np.ndarray:
    """Re-derive the in-gamut bins from the sRGB gamut; returns ``(n, 2)`` float64 bin centres.

    Rule (reproduces ``pts_in_hull.npy`` exactly, set and order): a centre c of the 23x23 grid
    ``AB_MIN + GRID * i`` is in gamut iff the convex hull of the sRGB ab gamut (all L) meets the square
    ``[c - reach, c + reach]^2`` with ``reach = GRID = 10``, i.e. c is within L-infinity distance 10 of the
    hull. Computed exactly as "c inside the convex hull of {hull vertices + (+-reach, +-reach)}" (the
    Minkowski sum of the hull and the square). The nearest grid centre lies 0.086 ab units from that
    boundary (float64 rounding is ~1e-13). Simpler rules do NOT reproduce the reference:
    cells hit by some sRGB colour give 261 (round) or 268 (floor) bins, the hull itself 233.
    Ordered like ``pts_in_hull.npy``: by a, then b (row-major over the grid).

    Args:
        ab: ``(N, 2)`` ab values whose hull is used; default :func:`srgb_surface_ab`.
        reach: half side of the square around each centre.
    """
    from scipy.spatial import ConvexHull

    pts = srgb_surface_ab() if ab is None else np.asarray(ab, dtype=np.float64)
    verts = pts[ConvexHull(pts).vertices]
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64) * reach
    grown = ConvexHull((verts[:, None, :] + corners[None]).reshape(-1, 2))
    g = AB_MIN + GRID * np.arange(GRID_SIZE, dtype=np.float64)
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    slack = centres @ grown.equations[:, :2].T + grown.equations[:, 2]  # <= 0 inside, per facet
    return centres[(slack <= 0).all(axis=1)]
