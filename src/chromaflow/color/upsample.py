"""Chroma upsampling: predicted ab ``(B, 2, h, w)`` to the photo's ``(H, W)``, bilinear or guided by full-res L.

``"bilinear"`` is the thesis's protocol (and the default). ``"guided"`` is He, Sun & Tang's guided filter
(TPAMI 2013, Alg. 1) with the full-resolution lightness as guide and the bilinearly upsampled ab as input:
per window ``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a mean(I)``, output ``mean(a) I + mean(b)``, so
colour edges snap to lightness edges. Chosen over joint bilateral upsampling because it is exact O(1) per
pixel (box sums by cumulative sums, any radius), has no halo or gradient-reversal artefacts near edges, and is
a few tensor ops that batch on any device.

    >>> import torch
    >>> ab, L = torch.zeros(1, 2, 4, 4), torch.full((1, 1, 32, 32), 50.0)
    >>> upsample_ab(ab, L, "guided").shape
    torch.Size([1, 2, 32, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from chromaflow.color.constants import L_NORM

UPSAMPLE_METHODS = ("bilinear", "guided")
DEFAULT_UPSAMPLE = "bilinear"  # the thesis's protocol
# Guided-filter window radius in cells of the predicted ab grid (radius px = this x the upsampling factor): one
# cell, the reach of bilinear interpolation between neighbouring predictions. Set a priori, not tuned on any test
# set (`bench/upsampling.py --tune` grids radius x eps on BSDS500 val; docs/upsampling.md).
GUIDED_RADIUS_CELLS = 1.0
# Regularizer eps on the guide I = L / 100 in [0, 1]: windows whose L varies by much less than
# sqrt(eps) * 100 L units keep the bilinear ab (a ~ 0), stronger L edges carry an ab edge.
GUIDED_EPS = 1e-3


def _box_sum_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over the window ``[i - r, i + r]`` clipped to the array along ``dim`` (cumulative sums: O(1) per item)."""
    n = x.shape[dim]
    c = torch.cumsum(x, dim=dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)  # c[k] = sum of the first k items
    idx = torch.arange(n, device=x.device)
    hi = (idx + r + 1).clamp(max=n)
    lo = (idx - r).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2r+1) x (2r+1)`` window around each pixel, clipped at the borders: ``(B, C, H, W)``."""
    if r < 0:
        raise ValueError(f"box_mean: radius must be >= 0, got {r}")
    h, w = x.shape[-2], x.shape[-1]
    ones_h = _box_sum_1d(torch.ones(h, dtype=x.dtype, device=x.device), r, 0)  # window lengths, (H,)
    ones_w = _box_sum_1d(torch.ones(w, dtype=x.dtype, device=x.device), r, 0)  # (W,)
    s = _box_sum_1d(_box_sum_1d(x, r, -2), r, -1)
    return s / (ones_h[:, None] * ones_w[None, :])


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter with a gray guide: ``guide (B, 1, H, W)``, ``src (B, C, H, W)`` -> ``(B, C, H, W)``.

    Computed in float32 (float64 stays float64) and returned in ``src``'s dtype. Both inputs are centred on their
    per-image means first (the filter is exactly invariant to that), which keeps the cumulative sums small.
    """
    if guide.ndim != 4 or guide.shape[1] != 1:
        raise ValueError(f"guided_filter: guide must be (B, 1, H, W), got {tuple(guide.shape)}")
    if src.ndim != 4 or src.shape[0] != guide.shape[0] or src.shape[-2:] != guide.shape[-2:]:
        raise ValueError(
            f"guided_filter: src {tuple(src.shape)} must be (B, C, H, W) matching guide {tuple(guide.shape)}"
        )
    if not eps > 0:
        raise ValueError(f"guided_filter: eps must be > 0, got {eps}")
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    I, p = guide.to(work), src.to(work)
    I = I - I.mean(dim=(-2, -1), keepdim=True)
    p_off = p.mean(dim=(-2, -1), keepdim=True)
    p = p - p_off
    mean_I = box_mean(I, radius)
    mean_p = box_mean(p, radius)
    var_I = box_mean(I * I, radius) - mean_I * mean_I
    cov_Ip = box_mean(I * p, radius) - mean_I * mean_p
    a = cov_Ip / (var_I.clamp(min=0) + eps)
    b = mean_p - a * mean_I
    q = box_mean(a, radius) * I + box_mean(b, radius) + p_off
    return q.to(src.dtype)


def guided_radius(ab_size: tuple[int, int], out_size: tuple[int, int], cells: float = GUIDED_RADIUS_CELLS) -> int:
    """Window radius (px, >= 1) of ``cells`` cells of an ``ab_size`` grid stretched to ``out_size``."""
    factor = max(out_size[0] / ab_size[0], out_size[1] / ab_size[1])
    return max(1, math.ceil(cells * factor))


def upsample_ab(
    ab: torch.Tensor,
    L: torch.Tensor,
    method: str = DEFAULT_UPSAMPLE,
    *,
    radius_cells: float = GUIDED_RADIUS_CELLS,
    eps: float = GUIDED_EPS,
) -> torch.Tensor:
    """Predicted ``ab (B, 2, h, w)`` in about [-110, 110] -> ``(B, 2, H, W)`` at the size of ``L (B, 1, H, W)``.

    Args:
        ab: low-resolution chroma (any float dtype; bf16 is computed in float32 and returned as bf16).
        L: full-resolution lightness in [0, 100] (used only by ``"guided"``; its size is the output size).
        method: ``"bilinear"`` (thesis; ``align_corners=False``) | ``"guided"`` (bilinear, then the guided filter
            with guide ``L / 100``, radius ``radius_cells`` ab cells, regularizer ``eps``).
    """
    if method not in UPSAMPLE_METHODS:
        raise ValueError(f"upsample: unknown method {method!r}; choose from {list(UPSAMPLE_METHODS)}")
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"upsample_ab: ab must be (B, 2, h, w), got {tuple(ab.shape)}")
    if L.ndim != 4 or L.shape[1] != 1 or L.shape[0] != ab.shape[0]:
        raise ValueError(f"upsample_ab: L must be (B, 1, H, W) with B = {ab.shape[0]}, got {tuple(L.shape)}")
    size = tuple(L.shape[-2:])
    up = ab if tuple(ab.shape[-2:]) == size else F.interpolate(ab, size=size, mode="bilinear", align_corners=False)
    if method == "bilinear":
        return up
    r = guided_radius(tuple(ab.shape[-2:]), size, radius_cells)
    return guided_filter(L / L_NORM, up, r, eps)
