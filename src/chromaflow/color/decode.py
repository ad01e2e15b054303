"""Class scores -> ab point estimates (thesis Sec. 2.2.3, Eq. 2.5): mode, mean, annealed mean.

The annealed mean re-tempers the predicted distribution, ``f_T(z) = exp(log z / T) / sum exp(log z / T)``,
and takes its mean over the bin centres. For ``z = softmax(logits)``, ``log z / T = logits / T - const``,
so ``f_T(z) = softmax(logits / T)``: T = 1 is the mean, T -> 0 the mode, the thesis uses T = 0.38.
"""

from __future__ import annotations

import torch
from torch import Tensor

from chromaflow.color.constants import T_ANNEAL, Q
from chromaflow.color.gamut import ab_bins
from chromaflow.color.lab import device_cached

__all__ = ["decode_ab", "METHODS"]

METHODS = ("mode", "mean", "annealed_mean")


@device_cached
def _centres(device: torch.device, dtype: torch.dtype) -> Tensor:
    """The ``(Q, 2)`` bin centres on ``device`` (copied there once, not per call)."""
    return ab_bins(device=device, dtype=dtype)


def decode_ab(logits: Tensor, method: str = "annealed_mean", T: float = T_ANNEAL) -> Tensor:
    """Map per-pixel bin scores to ab values.

    Args:
        logits: ``(B, Q, H, W)`` unnormalized scores (log-probabilities work too).
        method: ``"mode"`` (centre of the argmax bin), ``"mean"`` (T = 1) or ``"annealed_mean"`` (Eq. 2.5).
        T: temperature of ``"annealed_mean"``, > 0 (ignored by the other methods).
    Returns:
        ``(B, 2, H, W)`` ab in [-110, 110], in ``logits``' dtype (float32 for half inputs).
        Differentiable for ``mean`` / ``annealed_mean``.

    Example::

        >>> ab = decode_ab(torch.randn(1, 313, 8, 8), T=0.38)   # (1, 2, 8, 8)
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4 or logits.shape[1] != Q:
        raise ValueError(f"logits: expected shape (B, {Q}, H, W), got {tuple(logits.shape)}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    centres = _centres(x.device, x.dtype)  # (Q, 2)
    if method == "mode":
        return centres[x.argmax(dim=1)].permute(0, 3, 1, 2)
    if method == "annealed_mean":
        if not T > 0:
            raise ValueError(f"T: expected > 0, got {T!r}")
        x = x / T
    p = torch.softmax(x, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, centres)
