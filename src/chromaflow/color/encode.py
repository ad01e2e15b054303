"""ab -> bin targets: hard (nearest bin) and soft (Gaussian over the k nearest bins), without dense targets.

Neither encoder builds a ``(pixels, Q)`` matrix. Both use an O(1) lookup: the ab square [-110, 110]^2 is
cut into ``CELL x CELL`` cells and, once per ``k`` and device, every cell gets the list of bins that can
be among the k nearest of *any* point of the (closed) cell: with ``R`` the k-th smallest over bins of the
largest bin-to-cell distance, a bin is a candidate iff its smallest distance to the cell is <= R (at least
k bins lie within R of every point of the cell, so no other bin can be among its k nearest). A pixel then
compares itself with its cell's few candidates only (at most 4 / 12 / 16 for k = 1 / 5 / 10).

Exactness: distances are computed in float64 (float32 on MPS, which has no float64), so the result
equals brute-force k-nearest-neighbours in float64. Ties (equal distances, e.g. ab exactly on a cell
border) are broken by the lower bin index, which makes the output deterministic.

Out of range: ab is clamped to [AB_MIN, -AB_MIN] = [-110, 110] per channel before encoding (for both the
lookup and the distances). sRGB colours never need it (their ab lies in [-87, 99] x [-108, 95]).

Weights (soft): ``w_j = exp(-d_j^2 / (2 sigma^2)) / sum_i exp(-d_i^2 / (2 sigma^2))`` over the k nearest,
as in the original colorization code (thesis footnote 3: sigma = 5; k = 5 in the text, 10 in the code).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chromaflow.color.constants import AB_MIN, SOFT_K_PAPER, SOFT_SIGMA, Q
from chromaflow.color.gamut import ab_bins_numpy

__all__ = ["encode_hard", "encode_soft", "soft_cross_entropy", "CELL"]

CELL = 2.0  # side of the lookup cells in ab units (110 x 110 cells over [-110, 110]^2)
_AB_MAX = -AB_MIN
_N_CELLS = int(round((_AB_MAX - AB_MIN) / CELL))
_FAR = 1.0e4  # coordinate of the padding "bin" (never among the k nearest)
_CHUNK = 1 << 13  # pixels per chunk: keeps the (chunk, M) temporaries cache-resident (~1 MB)


def _check_ab(ab: object) -> Tensor:
    if not isinstance(ab, Tensor):
        raise TypeError(f"ab: expected a torch.Tensor, got {type(ab).__name__}")
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab: expected shape (B, 2, H, W), got {tuple(ab.shape)}")
    if not ab.is_floating_point():
        raise TypeError(f"ab: expected a floating dtype, got {ab.dtype}")
    if not bool(torch.isfinite(ab).all()):
        raise ValueError("ab: contains NaN or infinite values")
    return ab


@functools.cache
def _candidate_table_np(k: int) -> np.ndarray:
    """``(N_CELLS * N_CELLS, M)`` int64 candidate bins per cell, ascending, padded with Q (the far bin)."""
    pts = ab_bins_numpy()
    lo = AB_MIN + CELL * np.arange(_N_CELLS) - 1e-6  # cells a hair larger than they are: robust to rounding
    hi = lo + CELL + 2e-6

    def axis(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (cells, Q) per-axis min/max distance
        dmin = np.maximum(np.maximum(lo[:, None] - c[None], c[None] - hi[:, None]), 0.0)
        dmax = np.maximum(np.abs(c[None] - lo[:, None]), np.abs(c[None] - hi[:, None]))
        return dmin, dmax

    amin, amax = axis(pts[:, 0])
    bmin, bmax = axis(pts[:, 1])
    dmin2 = (amin**2)[:, None, :] + (bmin**2)[None, :, :]  # (cells_a, cells_b, Q)
    dmax2 = (amax**2)[:, None, :] + (bmax**2)[None, :, :]
    r2 = np.partition(dmax2, k - 1, axis=-1)[..., k - 1 : k]
    cand = (dmin2 <= r2).reshape(_N_CELLS * _N_CELLS, Q)
    m = int(cand.sum(1).max())
    table = np.full((cand.shape[0], m), Q, dtype=np.int64)
    for i, row in enumerate(cand):
        nz = np.flatnonzero(row)
        table[i, : nz.size] = nz
    return table


@functools.cache
def _lookup(k: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per cell: candidate bins ``(cells, M)`` long and their a and b coordinates ``(cells, M)`` in ``dtype``."""
    table = _candidate_table_np(k)
    centres = np.concatenate([ab_bins_numpy(), [[_FAR, _FAR]]], axis=0)  # the padding bin Q is far away
    return (
        torch.as_tensor(table, device=device),
        torch.as_tensor(centres[table, 0], dtype=dtype, device=device).contiguous(),
        torch.as_tensor(centres[table, 1], dtype=dtype, device=device).contiguous(),
    )


def _dist_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _knn(ab: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest bins of ``ab (B, 2, H, W)``: (idx ``(N, k)`` long, squared distance ``(N, k)`` float64)."""
    if not isinstance(k, int) or not 1 <= k <= Q:
        raise ValueError(f"k: expected an int in [1, {Q}], got {k!r}")
    dd = _dist_dtype(ab.device)
    table, cand_a, cand_b = _lookup(k, ab.device, dd)
    flat = ab.detach().to(dd).permute(0, 2, 3, 1).reshape(-1, 2).clamp(AB_MIN, _AB_MAX)
    out_i, out_d = [], []
    for start in range(0, flat.shape[0], _CHUNK):
        x = flat[start : start + _CHUNK]
        cell = ((x - AB_MIN) / CELL).floor().long().clamp_(0, _N_CELLS - 1)
        cid = cell[:, 0] * _N_CELLS + cell[:, 1]
        cand = table.index_select(0, cid)  # (n, M), ascending bin index
        d2 = (cand_a.index_select(0, cid) - x[:, :1]).square_() + (cand_b.index_select(0, cid) - x[:, 1:]).square_()
        # k == 1: argmin returns the first minimum, i.e. the lowest bin index on ties (like the stable sort)
        j = d2.argmin(dim=1, keepdim=True) if k == 1 else torch.sort(d2, dim=1, stable=True).indices[:, :k]
        out_i.append(cand.gather(1, j))
        out_d.append(d2.gather(1, j))
    return torch.cat(out_i), torch.cat(out_d)


def _to_bkhw(x: Tensor, b: int, h: int, w: int) -> Tensor:
    return x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def encode_hard(ab: Tensor) -> Tensor:
    """Index of the nearest in-gamut bin.

    Args:
        ab: ``(B, 2, H, W)`` float, a and b in about [-110, 110] (clamped to it).
    Returns:
        ``(B, H, W)`` long in [0, Q). Ties go to the lower bin index.
    """
    _check_ab(ab)
    b, _, h, w = ab.shape
    idx, _ = _knn(ab, 1)
    return idx.reshape(b, h, w)


def encode_soft(ab: Tensor, k: int = SOFT_K_PAPER, sigma: float = SOFT_SIGMA) -> tuple[Tensor, Tensor]:
    """Soft-encoding: the k nearest bins and their Gaussian weights (thesis footnote 3).

    Args:
        ab: ``(B, 2, H, W)`` float, a and b in about [-110, 110] (clamped to it).
        k: number of nearest bins (thesis text: 5; released code: 10).
        sigma: Gaussian kernel width in ab units.
    Returns:
        idx ``(B, k, H, W)`` long, nearest first (``idx[:, 0]`` is the hard encoding);
        w ``(B, k, H, W)`` in ``ab``'s dtype, summing to 1 over k.
    """
    _check_ab(ab)
    if not sigma > 0:
        raise ValueError(f"sigma: expected > 0, got {sigma!r}")
    b, _, h, w = ab.shape
    idx, d2 = _knn(ab, k)
    # subtract the nearest distance first: the same weights after normalization, no underflow far away
    wt = torch.exp(-(d2 - d2[:, :1]) / (2.0 * sigma**2))
    wt = wt / wt.sum(dim=1, keepdim=True)
    return _to_bkhw(idx, b, h, w), _to_bkhw(wt.to(ab.dtype), b, h, w)


def soft_cross_entropy(logits: Tensor, idx: Tensor, w: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """Multinomial cross-entropy against a sparse soft target (Eq. 2.2), averaged over pixels.

    ``mean_{b,h,w} [ -v_{bhw} * sum_k w_{bkhw} * log softmax(logits)_{b, idx_{bkhw}, h, w} ]``

    Args:
        logits: ``(B, Q, H, W)`` unnormalized scores.
        idx: ``(B, k, H, W)`` long bin indices in [0, Q) (from :func:`encode_soft` / ``encode_hard[:, None]``).
        w: ``(B, k, H, W)`` target weights (summing to 1 over k).
        pixel_weight: optional ``(B, H, W)`` per-pixel factor v (Eq. 2.3, e.g. ``weights[idx[:, 0]]``).
    Returns:
        scalar tensor (differentiable w.r.t. ``logits``).
    """
    for name, t in (("logits", logits), ("idx", idx), ("w", w)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name}: expected 4 dims (B, C, H, W), got {tuple(t.shape)}")
    if idx.shape != w.shape:
        raise ValueError(f"idx and w: shapes differ, {tuple(idx.shape)} vs {tuple(w.shape)}")
    bq, hw = (logits.shape[0], *logits.shape[2:]), (idx.shape[0], *idx.shape[2:])
    if bq != hw:
        raise ValueError(f"logits {tuple(logits.shape)} and idx {tuple(idx.shape)}: batch/spatial sizes differ")
    if idx.dtype != torch.long:
        raise TypeError(f"idx: expected torch.long, got {idx.dtype}")
    logp = F.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)
    per_pixel = -(logp.gather(1, idx) * w.to(logp.dtype)).sum(dim=1)  # (B, H, W)
    if pixel_weight is not None:
        if pixel_weight.shape != per_pixel.shape:
            raise ValueError(f"pixel_weight: expected shape {tuple(per_pixel.shape)}, got {tuple(pixel_weight.shape)}")
        per_pixel = per_pixel * pixel_weight.to(per_pixel.dtype)
    return per_pixel.mean()
