"""Edit propagation that does not learn: Levin, Lischinski & Weiss, "Colorization using Optimization"
(SIGGRAPH 2004), the non-learned baseline of the thesis's Table 3.1 / Fig. 3.6.

Each chroma channel U is found by minimizing ``sum_r (U(r) - sum_{s in N(r)} w_rs U(s))^2`` subject
to ``U = hint`` on the revealed pixels, with affinities from the lightness Y in a 3x3 window:
``w_rs ∝ exp(-(Y(r) - Y(s))^2 / c_r)``, ``sum_s w_rs = 1``, with ``c_r`` = 0.6 x the local variance
of Y, raised so the most similar neighbour keeps weight >= 0.01 and floored at 2e-6 (the constants of
the authors' released ``getColorExact``). The constrained least-squares problem is the sparse linear system
``A U = b`` with ``A = I - W`` on free pixels and identity rows on the constrained ones, solved with
SciPy's sparse direct solver. With no hints the result is gray (ab = 0), as the thesis notes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

SIGMA_FLOOR = 2e-6  # variance floor in [0,1]^2 lightness units (the original code uses 2e-6 too)


def _affinity(y: np.ndarray) -> sp.csr_matrix:
    """Row-normalized 3x3 affinity matrix W ``(HW, HW)`` of the lightness ``y (H, W)`` in [0, 1]."""
    h, w = y.shape
    n = h * w
    idx = np.arange(n).reshape(h, w)
    pad_y = np.pad(y, 1, mode="edge")
    pad_i = np.pad(idx, 1, mode="constant", constant_values=-1)
    neigh_y = np.stack([pad_y[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    neigh_i = np.stack([pad_i[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    valid = neigh_i >= 0
    centre = 4  # the (0, 0) offset
    valid[centre] = False
    # local variance over the window (including the centre), as in the original implementation
    win = np.where(neigh_i >= 0, neigh_y, np.nan)
    d2 = (neigh_y - y[None]) ** 2
    min_d2 = np.where(valid, d2, np.inf).min(0)
    # csig = 0.6 var, at least large enough that the closest neighbour keeps weight 0.01, floored
    csig = np.maximum(np.maximum(np.nanvar(win, axis=0) * 0.6, -min_d2 / np.log(0.01)), SIGMA_FLOOR)
    wgt = np.exp(-d2 / csig[None]) * valid
    wgt /= np.maximum(wgt.sum(0, keepdims=True), 1e-12)
    rows = np.broadcast_to(idx[None], neigh_i.shape)[valid]
    return sp.csr_matrix((wgt[valid], (rows, neigh_i[valid])), shape=(n, n))


def propagate(l: np.ndarray, hint_ab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Propagate sparse ab hints over an image.

    Args:
        l: lightness ``(H, W)`` in [0, 100].
        hint_ab: ``(2, H, W)`` ab at the revealed pixels (ignored elsewhere).
        mask: ``(H, W)`` bool/0-1, True where ab is revealed.
    Returns:
        ab ``(2, H, W)`` float64.
    """
    l = np.asarray(l, np.float64)
    hint_ab = np.asarray(hint_ab, np.float64)
    m = np.asarray(mask).astype(bool)
    if l.ndim != 2 or hint_ab.shape != (2, *l.shape) or m.shape != l.shape:
        raise ValueError(
            f"propagate: expected l (H,W), hint_ab (2,H,W), mask (H,W); got {l.shape}, {hint_ab.shape}, {m.shape}"
        )
    if not m.any():
        return np.zeros_like(hint_ab)
    n = l.size
    W = _affinity(l / 100.0)
    free = ~m.ravel()
    A = sp.eye(n, format="csr") - sp.diags(free.astype(np.float64)) @ W
    A = A.tocsc()
    solve = spla.factorized(A)
    out = np.empty_like(hint_ab)
    for c in range(2):
        b = np.where(m.ravel(), hint_ab[c].ravel(), 0.0)
        out[c] = solve(b).reshape(l.shape)
    return out
