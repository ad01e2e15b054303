"""Empirical ab prior and class-rebalancing weights (thesis Sec. 2.2.2, Eq. 2.4).

``w ∝ ((1 - lam) p~ + lam / Q)^-1`` normalized so that ``E_p~[w] = sum_q p~_q w_q = 1``, where ``p~`` is
the empirical prior smoothed with a Gaussian (sigma = 5). Smoothing choice (stated, as the thesis leaves
it open): we smooth over the 313 bin centres themselves,
``p~_q = sum_j p_j G_sigma(|c_q - c_j|) / sum_q' sum_j p_j G_sigma(|c_q' - c_j|)``, so all mass stays on
in-gamut bins (the reference code instead filtered a dense 2-D ab histogram and re-sampled it at the bins).

Shipped prior (``assets/prior_imagenet.npy``, used when ``load_prior(path=None)``): the original ImageNet
empirical prior over the 313 bins of the colorization code (Zhang et al. 2016), transcribed from a
public port that embeds it as literals (``shared/datasets/reference_npy/prior_probs_imagenet_transcribed.npy``;
not byte-verified against the original file; sums to 1, peak 0.201 at ab = (0, 0)).
"""

from __future__ import annotations

import functools
import os
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from chromaflow import exact
from chromaflow.color.constants import PRIOR_SIGMA, REBALANCE_LAMBDA, Q
from chromaflow.color.gamut import ab_bins_numpy

__all__ = ["load_prior", "smooth_prior", "rebalance_weights"]

ArrayLike = np.ndarray | Tensor


def _as_prior(p: object, name: str = "p") -> np.ndarray:
    if isinstance(p, Tensor):
        arr = p.detach().cpu().to(torch.float64).numpy()
    elif isinstance(p, np.ndarray):
        arr = p.astype(np.float64)
    else:
        raise TypeError(f"{name}: expected a numpy array or torch.Tensor, got {type(p).__name__}")
    if arr.shape != (Q,):
        raise ValueError(f"{name}: expected shape ({Q},), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name}: expected finite non-negative values")
    if arr.sum() <= 0:
        raise ValueError(f"{name}: sums to 0, not a distribution")
    return arr


def _like(x: np.ndarray, ref: object) -> ArrayLike:
    if isinstance(ref, Tensor):
        return torch.as_tensor(x, dtype=torch.float64, device=ref.device)
    return x


def load_prior(path: str | os.PathLike | None = None) -> Tensor:
    """Load a prior over the Q bins: ``(Q,)`` float64 tensor summing to 1 (renormalized).

    Args:
        path: a ``.npy`` of shape ``(Q,)`` (e.g. ``prior.npy`` written by ``chromaflow stats``);
            ``None`` loads the shipped ImageNet prior (see the module docstring for its provenance).
    """
    if path is None:
        with resources.files("chromaflow.color").joinpath("assets/prior_imagenet.npy").open("rb") as f:
            arr = np.load(f, allow_pickle=False)
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"prior: no such file {os.fspath(path)!r}")
        arr = np.load(path, allow_pickle=False)
    arr = _as_prior(arr, name=f"prior {os.fspath(path) if path else 'assets/prior_imagenet.npy'}")
    return torch.as_tensor(arr / arr.sum(), dtype=torch.float64)


@functools.lru_cache(maxsize=4)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """``(Q, Q)`` float64: ``exp(-|c_q - c_j|^2 / (2 sigma^2))`` between bin centres (read-only)."""
    c = ab_bins_numpy()
    k = exact.exp(-((c[:, None, :] - c[None, :, :]) ** 2).sum(-1) / (2.0 * sigma**2))
    k.flags.writeable = False
    return k


def smooth_prior(p: ArrayLike, sigma: float = PRIOR_SIGMA) -> ArrayLike:
    """Gaussian-smooth a prior over the bin centres: ``(Q,)`` -> ``(Q,)`` summing to 1 (float64).

    ``p~_q ∝ sum_j p_j exp(-|c_q - c_j|^2 / (2 sigma^2))``; ``sigma = 0`` returns ``p`` normalized.
    Returns a numpy array for numpy input, a tensor (on ``p``'s device) for tensor input. The same bits on
    every machine (:mod:`chromaflow.exact`): the weights are a DVC-hashed output of ``chromaflow stats``.
    """
    arr = _as_prior(p)
    if sigma < 0:
        raise ValueError(f"sigma: expected >= 0, got {sigma!r}")
    out = arr if sigma == 0 else exact.dot(_gaussian_kernel(float(sigma)), arr)
    return _like(out / exact.fsum(out), p)


def rebalance_weights(p: ArrayLike, lam: float = REBALANCE_LAMBDA, sigma: float = PRIOR_SIGMA) -> ArrayLike:
    """Class-rebalancing weights of Eq. 2.4: ``(Q,)`` prior -> ``(Q,)`` weights with ``sum(p~ * w) == 1``.

    ``lam = 1`` gives all ones (no rebalancing); ``lam = 0`` gives ``1 / (Q p~)`` (needs ``p~ > 0``).
    Returns float64, numpy for numpy input, a tensor for tensor input.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected in [0, 1], got {lam!r}")
    ps = np.asarray(smooth_prior(_as_prior(p), sigma))
    mix = (1.0 - lam) * ps + lam / Q
    if (mix <= 0).any():
        raise ValueError(f"rebalance_weights: lam={lam} and the smoothed prior has zeros; weights would be infinite")
    w = 1.0 / mix
    return _like(w / exact.fsum(ps * w), p)
