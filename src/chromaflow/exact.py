"""Float64 results that are the same bits on every machine: for the outputs that DVC hashes.

numpy, OpenBLAS and torch choose kernels by CPU (SIMD width, OpenBLAS core type), so the last bit of a
sum, a matrix product or ``np.exp`` / ``np.log10`` changes from one machine to another (measured: the
``stats`` output's correlation changed with ``OPENBLAS_CORETYPE``; ``np.exp``/``np.log10`` change with
numpy's AVX-512 dispatch). Here sums are exactly rounded (``math.fsum``: the result does not depend on
the order) and elementary functions come from the ``decimal`` module (software, 40 digits, then rounded
to float64). Elementwise ``+ - * /`` and ``sqrt`` are IEEE-exact everywhere and need no help.

    >>> fsum(np.array([1e16, 1.0, -1e16]))
    1.0
    >>> float(log(np.array([8.0]), base=2)[0])
    3.0
"""

from __future__ import annotations

import decimal
import math
import os

import numpy as np

__all__ = ["fsum", "dot", "exp", "log", "corr", "use_portable_kernels"]

# torch's kernels for CPU floats: baseline ATen (no AVX2/AVX-512 variants), oneDNN capped at SSE4.1, MKL in
# its conditional-numerical-reproducibility mode; each is read when its library first runs, not at import.
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}

_CTX = decimal.Context(prec=40)


def fsum(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Exactly rounded sum of ``x`` (float64) over ``axis`` (None: all elements)."""
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        return math.fsum(x.ravel().tolist())
    moved = np.moveaxis(x, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    return np.array([math.fsum(row) for row in flat.tolist()], dtype=np.float64).reshape(moved.shape[:-1])


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exactly rounded matrix-vector product: ``a (..., N)`` by ``b (N,)`` -> ``(...)`` float64."""
    return fsum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64), axis=-1)


def _elementwise(x: np.ndarray, fn) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    uniq, inv = np.unique(x, return_inverse=True)  # many inputs repeat (grid distances, zero counts)
    vals = np.array([float(fn(decimal.Decimal(float(v)))) for v in uniq], dtype=np.float64)
    return vals[inv].reshape(x.shape)


def exp(x: np.ndarray) -> np.ndarray:
    """``e ** x`` elementwise, float64, the same bits on every machine."""
    return _elementwise(x, lambda d: d.exp(_CTX))


def log(x: np.ndarray, base: float | None = None) -> np.ndarray:
    """Logarithm elementwise (natural, or to ``base``: 2 and 10 are exact at powers), ``x > 0``, float64."""
    if (np.asarray(x) <= 0).any():
        raise ValueError("log: expected x > 0")
    if base is None:
        return _elementwise(x, lambda d: d.ln(_CTX))
    if base == 10:
        return _elementwise(x, lambda d: d.log10(_CTX))
    ln_base = decimal.Decimal(base).ln(_CTX)
    return _elementwise(x, lambda d: _CTX.divide(d.ln(_CTX), ln_base))


def corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D float64 arrays (exact sums; NaN when either is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - fsum(x) / x.size, y - fsum(y) / y.size
    den = math.sqrt(fsum(dx * dx) * fsum(dy * dy))
    return fsum(dx * dy) / den if den > 0 else math.nan


def use_portable_kernels() -> None:
    """Run torch's CPU float kernels so that training and evaluation give the same bytes on every x86-64
    machine: :data:`PORTABLE_KERNELS` and one thread (a reduction split over threads sums in another
    order). For CPU-small runs whose outputs DVC hashes (``chromaflow <step> --portable-kernels``); slower
    for big models. Call before the first torch operation; raises ``RuntimeError`` when it is too late.
    """
    os.environ.update(PORTABLE_KERNELS)
    import torch

    torch.set_num_threads(1)
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise RuntimeError("use_portable_kernels: torch already chose its CPU kernels; call it before any torch op")
