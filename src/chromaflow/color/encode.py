"""ab -> bin targets: hard (nearest bin) and soft (Gaussian over the k nearest bins), without dense targets.

Neither encoder builds a ``(pixels, Q)`` matrix. Two paths give the same indices (and weights to float rounding):

* **fixed** (every device but an eager CPU; ``torch.compile``): one sequence of about 20 whole-batch tensor ops
  whatever the batch and image size, with no host synchronization and no per-call table building (tables are
  built once per ``k`` and copied once per device and dtype, cached). Each pixel gathers its lookup cell's row of
  candidate bins in one ``index_select``, computes the squared distances and keeps the first k of a stable sort
  (``argmin`` for k = 1).
* **blocked** (eager CPU, :data:`chromaflow.color.lab.CPU_BLOCKED`): pixels go in chunks small enough that every
  op runs on its calling thread and in cache (see :func:`_chunk_size`), and instead of sorting, a pixel's rank
  of each candidate comes from per-cell tables (below): ~4x faster than the sort on one CPU thread.

Lookup grids over the ab square [-110, 110]^2, built once per ``k`` (lazily, cached; a few MB):

* fine cells (331 x 331, side ~0.66; k <= 16): every cell lists the bins that can be among the k nearest of
  some point of the (closed) cell (at most 4 / 12 / 14 for k = 1 / 5 / 10), and for every pair of them whether
  one is closer than the other all over the cell (the difference of two squared distances is affine in the
  point, so its extremes over the cell are at the corners) or the pair is *undecided* (their bisector crosses
  the cell). Blocked path: a pixel's rank of a candidate is the count of candidates certainly closer plus the
  undecided pairs it loses, compared from its own distances: at most 8 comparisons, no sort. Cells with more
  undecided pairs (~3%, around the points where many bisectors meet) fall back to the coarse cells.
* coarse cells (``CELL x CELL``): with ``R`` the k-th smallest over bins of the largest bin-to-cell distance,
  a bin is a candidate iff its smallest distance to the cell is <= R (at least k bins lie within R of every
  point of the cell); the candidates (at most 4 / 12 / 16 for k = 1 / 5 / 10) are stably sorted by distance.

Exactness: distances are computed in float64 (float32 on MPS, which has no float64), so the result
equals brute-force k-nearest-neighbours in float64. Ties (equal distances, e.g. ab exactly on a cell
border) are broken by the lower bin index, which makes the output deterministic. (A pair is "decided" in a
fine cell only with a margin of 1e-6 in squared distance over a cell enlarged by 1e-9, far above rounding.)

Out of range: ab is clamped to [AB_MIN, -AB_MIN] = [-110, 110] per channel before encoding (for both the
lookup and the distances). sRGB colours never need it (their ab lies in [-87, 99] x [-108, 95]).

Weights (soft): ``w_j = exp(-d_j^2 / (2 sigma^2)) / sum_i exp(-d_i^2 / (2 sigma^2))`` over the k nearest,
as in the original colorization code (thesis footnote 3: sigma = 5; k = 5 in the text, 10 in the code).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chromaflow.color.constants import AB_MIN, SOFT_K_PAPER, SOFT_SIGMA, Q
from chromaflow.color.gamut import ab_bins_numpy
from chromaflow.color.lab import cpu_blocked, device_cached

__all__ = ["encode_hard", "encode_soft", "soft_cross_entropy", "check_finite", "CELL"]
CELL = 2.0  # side of the coarse lookup cells in ab units (110 x 110 cells over [-110, 110]^2): sort path
_AB_MAX = -AB_MIN
_N_CELLS = int(round((_AB_MAX - AB_MIN) / CELL))
_FINE_N = 331  # fine cells per axis (side 220 / 331 ~ 0.66): prime, so no inner edge lies on a bisector x = 5 mod 10
_FINE_PAIRS = 8  # undecided pairs a fine cell may have (more: its pixels take the sort path, ~5% of a photo's pixels)
_FINE_MAX_K = 16  # larger k: the sort path only
_PAD = 1e-9  # fine cells are taken this much larger on each side: robust to the rounding of the cell index
_EPS = 1e-6  # a pair is "decided" in a cell if their squared distances differ by more than this all over it
_FAR = 1.0e4  # coordinate of the padding "bin" Q (never among the k nearest)
_PARALLEL_GRAIN = 32768  # torch's at::internal::GRAIN_SIZE: smaller CPU ops run on the calling thread


def check_finite(t: Tensor, name: str) -> None:
    """Raise if ``t`` holds NaN or inf, without a host sync where that would cost one.

    Eager on the CPU (:func:`cpu_blocked`): a ``ValueError`` naming ``name``. On other devices and under
    ``torch.compile``: an asynchronous device assertion with the same message (the step fails when the device
    reaches it).
    """
    ok = torch.isfinite(t).all()
    msg = f"{name}: contains NaN or infinite values"
    if cpu_blocked(t):
        if not bool(ok):
            raise ValueError(msg)
    else:
        torch._assert_async(ok, msg)


def _check_ab(ab: object) -> Tensor:
    if not isinstance(ab, Tensor):
        raise TypeError(f"ab: expected a torch.Tensor, got {type(ab).__name__}")
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab: expected shape (B, 2, H, W), got {tuple(ab.shape)}")
    if not ab.is_floating_point():
        raise TypeError(f"ab: expected a floating dtype, got {ab.dtype}")
    check_finite(ab, "ab")
    return ab


def _check_k(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= Q:
        raise ValueError(f"k: expected an int in [1, {Q}], got {k!r}")
    return k


@functools.cache
def _candidate_table_np(k: int) -> np.ndarray:
    """``(N_CELLS * N_CELLS, M)`` int64 candidate bins per coarse cell, ascending, padded with Q (the far bin)."""
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
    return _compact((dmin2 <= r2).reshape(_N_CELLS * _N_CELLS, Q), np.arange(Q), Q, extra=0)


def _compact(mask: np.ndarray, values: np.ndarray, pad: int, extra: int) -> np.ndarray:
    """Rows of ``values[j]`` for the True ``j`` of each row of ``mask`` (in order), padded with ``pad``.

    ``values`` is ``(cols,)`` (the same for every row) or ``(rows, cols)``; ``extra`` padding columns are
    added beyond the longest row.
    """
    r, j = np.nonzero(mask)  # row-major: grouped by row, ascending j
    counts = mask.sum(1)
    slot = np.arange(r.size) - (np.cumsum(counts) - counts)[r]
    out = np.full((mask.shape[0], int(counts.max()) + extra), pad, dtype=np.int64)
    out[r, slot] = values[j] if values.ndim == 1 else values[r, j]
    return out


@functools.cache
def _rank_tables_np(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per fine cell: cand ``(cells, W)`` int16, base ``(cells, W + 1)`` int8 (last: ok), pairs ``(cells, 2P)`` int8.

    ``cand``: the bins that are among the k nearest of some point of the cell, ascending, padded with Q. For each candidate j, every other candidate i is either closer than j
    all over the cell, farther all over it (by more than _EPS in squared distance: the difference is affine in
    the point, so its extremes over the cell are at the corners), or *undecided*. ``base[j]`` counts the
    candidates certainly closer than j plus the undecided pairs (j, q) with q > j. ``pairs`` lists the undecided
    pairs (p < q, positions in ``cand``) as (p_1..p_P, q_1..q_P), padded with (0, 0). A pixel's rank of
    j is then ``base[j] + sum over pairs (p, j) of [d_p <= d_q] - sum over pairs (j, q) of [d_j <= d_q]``: the
    number of candidates before j in the stable order (ties to the lower index). ``ok`` is False for cells with
    more than P undecided pairs (their pixels take the sort path); it is the last column of ``base``.
    """
    n, P = _FINE_N, _FINE_PAIRS
    c = (_AB_MAX - AB_MIN) / n
    h = c / 2 + _PAD
    pts = ab_bins_numpy()
    centre = AB_MIN + c * (np.arange(n) + 0.5)
    ci, cj = np.divmod(np.arange(n * n), n)  # per fine cell: its a and b index

    def axis(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (n, Q + 1) squared min/max distance on one axis
        dist = np.abs(centre[:, None] - col[None])
        inf = np.full((n, 1), np.inf)
        return np.concatenate([np.maximum(dist - h, 0.0) ** 2, inf], 1), np.concatenate([(dist + h) ** 2, inf], 1)

    amin, amax = axis(pts[:, 0])
    bmin, bmax = axis(pts[:, 1])
    # R^2 >= the k-th nearest squared distance of every point of the cell: the k-th smallest largest distance
    # over any k bins, here the candidates of the coarse cell that holds the fine cell's centre
    coarse = _candidate_table_np(k)
    parent = np.minimum(((centre - AB_MIN) / CELL).astype(np.int64), _N_CELLS - 1)
    rows = coarse[parent[ci] * _N_CELLS + parent[cj]]  # (cells, Mc)
    r2 = np.partition(amax[ci[:, None], rows] + bmax[cj[:, None], rows], k - 1, axis=1)[:, k - 1]
    cand = np.empty((n * n, Q), dtype=bool)
    for a0 in range(0, n, 32):
        a1 = min(n, a0 + 32)
        dmin2 = amin[a0:a1, None, :Q] + bmin[None, :, :Q]  # (rows, n, Q)
        cand[a0 * n : a1 * n] = (dmin2 <= r2[a0 * n : a1 * n].reshape(a1 - a0, n, 1)).reshape(-1, Q)
    ids = _compact(cand, np.arange(Q), Q, extra=0)  # (cells, M)
    m_all = ids.shape[1]
    far = np.concatenate([pts, [[_FAR, _FAR]]])
    upper = np.triu(np.ones((m_all, m_all), dtype=bool), 1)
    keep = np.empty(ids.shape, dtype=bool)
    base = np.empty(ids.shape, dtype=np.int64)
    pair_c, pair_p, pair_q = [], [], []
    for s in range(0, n * n, 4096):
        e = min(n * n, s + 4096)
        pa, pb = far[ids[s:e], 0], far[ids[s:e], 1]  # (nc, M)
        dc = (pa - centre[ci[s:e], None]) ** 2 + (pb - centre[cj[s:e], None]) ** 2
        f = dc[:, :, None] - dc[:, None, :]  # d_i - d_j at the centre
        slack = 2 * h * (np.abs(pa[:, :, None] - pa[:, None, :]) + np.abs(pb[:, :, None] - pb[:, None, :]))
        less = f + slack < -_EPS  # i closer than j all over the cell
        undecided = ~less & ~(f - slack > _EPS)
        nless = less.sum(1)
        kp = (nless < k) & (ids[s:e] < Q)
        und = undecided & kp[:, :, None] & kp[:, None, :] & upper
        keep[s:e] = kp
        base[s:e] = nless + und.sum(2)
        r, i, j = np.nonzero(und)
        pair_c.append(r + s), pair_p.append(i), pair_q.append(j)
    newpos = np.cumsum(keep, 1) - 1
    cand_t = _compact(keep, ids, Q, extra=0)
    w = cand_t.shape[1]
    base_t = np.concatenate([np.where(cand_t < Q, _compact(keep, base, k, extra=0), k), np.zeros((n * n, 1))], 1)
    pc, pp, pq = np.concatenate(pair_c), np.concatenate(pair_p), np.concatenate(pair_q)
    counts = np.bincount(pc, minlength=n * n)
    slot = np.arange(pc.size) - (np.cumsum(counts) - counts)[pc]
    ok = counts <= P
    base_t[:, w] = ok
    sel = ok[pc]
    pairs_t = np.zeros((n * n, 2 * P), dtype=np.int64)  # padding (0, 0): adds 1 - 1
    pairs_t[pc[sel], slot[sel]] = newpos[pc[sel], pp[sel]]
    pairs_t[pc[sel], P + slot[sel]] = newpos[pc[sel], pq[sel]]
    return cand_t.astype(np.int16), base_t.astype(np.int8), pairs_t.astype(np.int8)


@functools.cache
def _coarse_lookup(k: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per coarse cell: candidate bins ``(cells, M)`` long and their a and b coordinates ``(cells, M)``."""
    table = _candidate_table_np(k)
    centres = np.concatenate([ab_bins_numpy(), [[_FAR, _FAR]]], axis=0)  # the padding bin Q is far away
    return (
        torch.as_tensor(table, device=device),
        torch.as_tensor(centres[table, 0], dtype=dtype, device=device).contiguous(),
        torch.as_tensor(centres[table, 1], dtype=dtype, device=device).contiguous(),
    )


@functools.cache
def _fine_lookup(k: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """The fine-cell tables on ``device`` (see :func:`_rank_tables_np`) and the bin a and b ``(Q + 1,)``."""
    centres = torch.as_tensor(np.concatenate([ab_bins_numpy(), [[_FAR, _FAR]]]), dtype=dtype, device=device)
    return (
        *(torch.as_tensor(t, device=device) for t in _rank_tables_np(k)),
        centres[:, 0].contiguous(),
        centres[:, 1].contiguous(),
    )


def _chunk_size(k: int, device: torch.device, sort: bool = False) -> int:
    """Pixels per chunk: on the CPU, every ``(chunk, width)`` temporary stays under torch's parallel grain.

    On a loaded machine a multi-threaded op over such small tensors waits ~10 ms for a descheduled worker
    (100x its work); single-threaded chunks avoid that. (For the same reason the weights use exp2: torch.exp
    goes to MKL's VML, multi-threaded from 2048 elements.) Other devices take large chunks.
    """
    if device.type != "cpu":
        return 1 << 18
    if sort or k > _FINE_MAX_K:
        width = _candidate_table_np(k).shape[1]
    else:
        width = max(_rank_tables_np(k)[1].shape[1], 2 * _FINE_PAIRS, k + 1)
    return max(256, (_PARALLEL_GRAIN - 1) // width)


def _dist_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _knn_sort(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest bins of the points ``x (n, 2)`` (clamped) by a stable sort of their coarse cell's candidates."""
    table, cand_a, cand_b = _coarse_lookup(k, x.device, x.dtype)
    c = ((x - AB_MIN) / CELL).long().clamp_(max=_N_CELLS - 1)  # x >= AB_MIN: long() is floor()
    cid = c[:, 0].mul_(_N_CELLS).add_(c[:, 1])
    cand = table.index_select(0, cid)  # (n, M), ascending bin index
    xa, xb = x[:, :1], x[:, 1:]
    d2 = (cand_a.index_select(0, cid) - xa).square_() + (cand_b.index_select(0, cid) - xb).square_()
    # k == 1: argmin returns the first minimum, i.e. the lowest bin index on ties (like the stable sort)
    j = d2.argmin(dim=1, keepdim=True) if k == 1 else torch.sort(d2, dim=1, stable=True).indices[:, :k]
    return cand.gather(1, j), d2.gather(1, j)


def _knn(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """k nearest bins of the points ``x (n, 2)`` (clamped): idx ``(n, k)`` long, squared distances ``(n, k)``.

    Nearest first, ties to the lower bin index. The third item lists the rows (``(r,)`` long, or None) whose
    fine cell had too many undecided pairs: their idx and distances are garbage, to be redone by
    :func:`_knn_sort` (in one batch, see :func:`encode_soft`).
    """
    if k > _FINE_MAX_K:
        return *_knn_sort(x, k), None
    cand_t, base_t, pairs_t, cen_a, cen_b = _fine_lookup(k, x.device, x.dtype)
    n, P = _FINE_N, _FINE_PAIRS
    c = (x - AB_MIN).mul_(n / (_AB_MAX - AB_MIN)).long().clamp_(max=n - 1)  # >= 0: long() is floor()
    cid = c[:, 0].mul_(n).add_(c[:, 1])
    cand = cand_t.index_select(0, cid).long()  # (m, W) kept candidates, ascending bin index
    m, w = cand.shape
    flat = cand.view(-1)
    d2 = cen_a.index_select(0, flat).view(m, w).sub_(x[:, :1]).square_()
    d2 += cen_b.index_select(0, flat).view(m, w).sub_(x[:, 1:]).square_()
    if k == 1:  # the first minimum: the lowest bin index on ties
        j = d2.argmin(dim=1, keepdim=True)
        return cand.gather(1, j), d2.gather(1, j), None
    base = base_t.index_select(0, cid).long()
    rank, ok = base[:, :w], base[:, w]
    pairs = pairs_t.index_select(0, cid).long()  # (m, 2P): p_1..p_P, q_1..q_P
    dp = d2.gather(1, pairs)
    before = torch.le(dp[:, :P], dp[:, P:], out=torch.empty_like(pairs[:, :P]))  # p before q (ties: lower p)
    rank.scatter_add_(1, pairs[:, P:], before)
    rank.scatter_add_(1, pairs[:, :P], before.neg_())
    rank.clamp_(max=k)  # ranks >= k all land in the spare column k
    idx = cand.new_empty(m, k + 1).scatter_(1, rank, cand)[:, :k]
    dk = d2.new_empty(m, k + 1).scatter_(1, rank, d2)[:, :k]
    return idx, dk, None if bool(ok.all()) else (ok == 0).nonzero().squeeze(1)


def _run_chunks(fn: Callable[[int, int, int], object], b: int, hw: int, chunk: int) -> list:
    """``[fn(image, start, stop)]`` over chunks of at most ``chunk`` pixels of each of ``b`` images.

    Serial on purpose: the chunks' ops are GIL-bound at this size, so Python threads measured slower.
    """
    return [fn(i, s, min(hw, s + chunk)) for i in range(b) for s in range(0, hw, chunk)]


def _flat_ab(ab: Tensor) -> Tensor:
    """``(B, 2, H * W)`` view/copy of ``ab`` in the distance dtype (not yet clamped)."""
    b, _, h, w = ab.shape
    return ab.detach().to(_dist_dtype(ab.device)).reshape(b, 2, h * w)


@device_cached
def _lookup(k: int, device: torch.device, dtype: torch.dtype) -> tuple[int, Tensor, Tensor]:
    """Cells per axis; candidates ``(cells, W)`` long and their (a, b) ``(cells, 2, W)`` in ``dtype``, on ``device``."""
    if k <= _FINE_MAX_K:
        n, cand = _FINE_N, _rank_tables_np(k)[0].astype(np.int64)
    else:
        n, cand = _N_CELLS, _candidate_table_np(k)
    centres = np.concatenate([ab_bins_numpy(), [[_FAR, _FAR]]], axis=0)  # the padding bin Q is far away
    coords = np.ascontiguousarray(centres[cand].transpose(0, 2, 1))
    return n, torch.as_tensor(cand, device=device), torch.as_tensor(coords, dtype=dtype, device=device)


def _encode(ab: Tensor, k: int, sigma: float) -> tuple[Tensor, Tensor | None]:
    """The fixed path: the k nearest bins of every pixel of ``ab (B, 2, H, W)`` (clamped here).

    Returns idx ``(B, H, W, k)`` long, nearest first, ties to the lower bin index, and the Gaussian weights
    ``(B, H, W, k)`` in ``ab``'s dtype (None for k = 1). A fixed sequence of ~20 ops whatever the shape; no
    host sync.
    """
    x = ab.detach().to(_dist_dtype(ab.device)).clamp(AB_MIN, _AB_MAX)
    n, cand, coords = _lookup(k, x.device, x.dtype)
    c = (x - AB_MIN).mul_(n / (_AB_MAX - AB_MIN)).long().clamp_(max=n - 1)  # (B, 2, H, W); >= 0: long() is floor()
    cid = torch.add(c[:, 1], c[:, 0], alpha=n)  # (B, H, W) cell index
    width = cand.shape[1]
    pts = coords.index_select(0, cid.reshape(-1)).view(*cid.shape, 2, width)  # (B, H, W, 2, W) candidate (a, b)
    d2 = (pts - x.permute(0, 2, 3, 1).unsqueeze(-1)).square_().sum(-2)  # (B, H, W, W): a^2 + b^2, as brute force
    if k == 1:  # the first minimum: the lowest bin index on ties
        return torch.take(cand, d2.argmin(dim=-1, keepdim=True).add_(cid.unsqueeze(-1), alpha=width)), None
    dk, j = torch.sort(d2, dim=-1, stable=True)
    idx = torch.take(cand, j[..., :k].add(cid.unsqueeze(-1), alpha=width))
    # exp(-d / (2 sigma^2)) = exp2(-d * s); the nearest distance subtracted first: the same weights after
    # normalization, no underflow far away (exp2 as in the blocked path, see _chunk_size)
    g = torch.exp2((dk[..., :1] - dk[..., :k]).mul_(1.0 / (math.log(2.0) * 2.0 * sigma**2)))
    return idx, g.div_(g.sum(dim=-1, keepdim=True)).to(ab.dtype)


def warm_up(device: torch.device, ks: tuple[int, ...] = (1,)) -> None:
    """Build the fixed path's tables for each k in ``ks`` on ``device`` now (before ``torch.compile`` traces)."""
    for k in ks:
        _lookup(_check_k(k), device, _dist_dtype(device))


def encode_hard(ab: Tensor) -> Tensor:
    """Index of the nearest in-gamut bin.

    Args:
        ab: ``(B, 2, H, W)`` float, a and b in about [-110, 110] (clamped to it).
    Returns:
        ``(B, H, W)`` long in [0, Q). Ties go to the lower bin index.
    """
    _check_ab(ab)
    if not cpu_blocked(ab):
        return _encode(ab, 1, SOFT_SIGMA)[0].squeeze(-1)
    b, _, h, w = ab.shape
    x = _flat_ab(ab)
    out = torch.empty(b, h * w, dtype=torch.long, device=ab.device)

    def run(i: int, s: int, e: int) -> None:
        out[i, s:e] = _knn(x[i, :, s:e].T.clamp(AB_MIN, _AB_MAX), 1)[0][:, 0]

    _run_chunks(run, b, h * w, _chunk_size(1, ab.device))
    return out.view(b, h, w)


def encode_soft(ab: Tensor, k: int = SOFT_K_PAPER, sigma: float = SOFT_SIGMA) -> tuple[Tensor, Tensor]:
    """Soft-encoding: the k nearest bins and their Gaussian weights (thesis footnote 3).

    Args:
        ab: ``(B, 2, H, W)`` float, a and b in about [-110, 110] (clamped to it).
        k: number of nearest bins (thesis text: 5; released code: 10).
        sigma: Gaussian kernel width in ab units.
    Returns:
        idx ``(B, k, H, W)`` long, nearest first (``idx[:, 0]`` is the hard encoding);
        w ``(B, k, H, W)`` in ``ab``'s dtype, summing to 1 over k. (The fixed path returns them channels_last
        in memory, like the network's logits on a GPU; their values do not depend on it.)
    """
    _check_ab(ab)
    _check_k(k)
    if not sigma > 0:
        raise ValueError(f"sigma: expected > 0, got {sigma!r}")
    if not cpu_blocked(ab):
        idx, wt = _encode(ab, k, sigma)
        wt = torch.ones(idx.shape, dtype=ab.dtype, device=ab.device) if wt is None else wt
        return idx.permute(0, 3, 1, 2), wt.permute(0, 3, 1, 2)
    b, _, h, w = ab.shape
    x = _flat_ab(ab)
    idx = torch.empty(b, k, h * w, dtype=torch.long, device=ab.device)
    wt = torch.empty(b, k, h * w, dtype=ab.dtype, device=ab.device)
    scale = 1.0 / (math.log(2.0) * 2.0 * sigma**2)  # exp(-d / (2 sigma^2)) = exp2(-d * scale)

    def weights(dk: Tensor) -> Tensor:  # (m, k) -> (k, m)
        # subtract the nearest distance first: the same weights after normalization, no underflow far away
        g = torch.exp2((dk[:, :1] - dk).mul_(scale))  # exp2, not exp: see _chunk_size
        return g.div_(g.sum(dim=1, keepdim=True)).T

    def run(i: int, s: int, e: int) -> tuple[int, Tensor] | None:
        ik, dk, bad = _knn(x[i, :, s:e].T.clamp(AB_MIN, _AB_MAX), k)
        idx[i, :, s:e] = ik.T
        wt[i, :, s:e] = weights(dk)
        return None if bad is None else (i, bad + s)

    redo = [r for r in _run_chunks(run, b, h * w, _chunk_size(k, ab.device)) if r is not None]
    for i in range(b):  # pixels of cells with too many undecided pairs: the sort path, in one batch per image
        pos = [p for j, p in redo if j == i]
        if not pos:
            continue
        pos = torch.cat(pos)
        chunk = _chunk_size(k, ab.device, sort=True)
        for s in range(0, len(pos), chunk):
            p = pos[s : s + chunk]
            ik, dk = _knn_sort(x[i].index_select(1, p).T.clamp(AB_MIN, _AB_MAX), k)
            idx[i].index_copy_(1, p, ik.T)
            wt[i].index_copy_(1, p, weights(dk).to(wt.dtype))
    return idx.view(b, k, h, w), wt.view(b, k, h, w)


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
