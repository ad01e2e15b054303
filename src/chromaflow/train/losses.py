"""The losses of thesis Table 2.1, on tensors already on the device.

- classification (Eq. 2.2): ``-sum_hw v(Z_hw) sum_q Z_hwq log Zhat_hwq``, averaged over pixels;
  ``v = w[q*]`` with ``q*`` the nearest bin (Eq. 2.3) and ``w`` from ``color.rebalance_weights``
  (Eq. 2.4) for "Ours (full)"; ``v = 1`` for "Ours (class)" (lambda = 1).
- regression (Eq. 2.1): ``1/2 sum_hw ||Y_hw - Yhat_hw||^2``, averaged over pixels, in ab / ab_norm units
  ("Ours (L2)" and "Ours (L2, ft)").

The arithmetic runs in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import torch

from chromaflow import color


def classification_loss(
    logits: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft-encoded cross-entropy, optionally class-rebalanced.

    Args:
        logits: ``(B, Q, h, w)`` raw network output.
        idx, w: soft encoding ``(B, k, h, w)`` from ``color.encode_soft`` (``idx[:, 0]`` nearest bin).
        class_weights: ``(Q,)`` rebalancing weights ``w`` (Eq. 2.4), or None for no rebalancing.
    Returns: scalar, mean over pixels.
    """
    if logits.ndim != 4 or idx.shape != w.shape or idx.shape[0] != logits.shape[0] or idx.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"classification_loss: logits {tuple(logits.shape)} and soft encoding idx {tuple(idx.shape)} / "
            f"w {tuple(w.shape)} do not match (expected (B, Q, h, w) and (B, k, h, w))"
        )
    v = None if class_weights is None else class_weights.to(logits.device, torch.float32)[idx[:, 0]]
    return color.soft_cross_entropy(logits.float(), idx, w.float(), pixel_weight=v)


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_hw 1/2 ||target - pred||^2`` over ``(B, 2, h, w)`` tensors (ab / ab_norm units)."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(
            f"regression_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (B, 2, h, w)"
        )
    return 0.5 * (pred.float() - target.float()).pow(2).sum(1).mean()
