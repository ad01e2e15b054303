"""Colorization metrics of the thesis (ch. 2, sec. 2.3.1, Table 2.1), implemented from the text.

- raw accuracy AuC: share of pixels whose predicted ab lies within an L2 threshold ``t`` of the ground-truth
  ab, for ``t = 0, 1, ..., 150``; the AuC is the mean of that cumulative curve over the 151 thresholds, in %.
- class-rebalanced AuC: the same with each pixel weighted by ``w[q*]`` where ``q*`` is the ground-truth
  pixel's nearest ab bin and ``w`` is Eq. 2.4 with ``lambda = 0`` (``w ~ 1 / p_smoothed``).
- PSNR on RGB uint8 (data range 255), per image.
- colourfulness: Hasler & Suesstrunk (2003) "M3" on RGB in [0, 255], per image; mean chroma ``sqrt(a^2+b^2)``.

Pixels are pooled over the whole evaluation set for the AuCs (every image has the same size in our protocol).

    >>> m = AucMeter(); m.update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)); m.auc()
    100.0
"""

from __future__ import annotations

import logging
import math

import torch

from chromaflow.color.constants import PRIOR_SIGMA

log = logging.getLogger(__name__)

AUC_MAX_THRESHOLD = 150  # thresholds 0..150 (step 1) in ab units, thesis sec. 2.3.1 item 3


def _check_ab(name: str, ab: torch.Tensor) -> None:
    if not isinstance(ab, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(ab).__name__}")
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (B, 2, H, W), got {tuple(ab.shape)}")


def ab_distance(pred_ab: torch.Tensor, gt_ab: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 distance in ab: ``(B, 2, H, W)`` x2 -> ``(B, H, W)`` (float32 or float64)."""
    _check_ab("pred_ab", pred_ab)
    _check_ab("gt_ab", gt_ab)
    if pred_ab.shape != gt_ab.shape:
        raise ValueError(f"pred_ab {tuple(pred_ab.shape)} and gt_ab {tuple(gt_ab.shape)} differ in shape")
    dtype = torch.promote_types(torch.promote_types(pred_ab.dtype, gt_ab.dtype), torch.float32)
    return torch.linalg.vector_norm(pred_ab.to(dtype) - gt_ab.to(dtype), dim=1)


class AucMeter:
    """Accumulates the (optionally weighted) cumulative ab-error distribution over batches.

    ``curve()[t]`` is the weighted share of pixels with error ``<= t`` for ``t = 0..max_threshold``;
    ``auc()`` is its mean over the thresholds, in percent (ground truth gives 100).
    """

    def __init__(self, max_threshold: int = AUC_MAX_THRESHOLD) -> None:
        if max_threshold < 0:
            raise ValueError(f"max_threshold must be >= 0, got {max_threshold}")
        self.max_threshold = int(max_threshold)
        # bin k in 0..max counts errors d with ceil(d) == k; bin max+1 holds everything larger
        self.hist = torch.zeros(self.max_threshold + 2, dtype=torch.float64)

    def update(self, pred_ab: torch.Tensor, gt_ab: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Add a batch: ``pred_ab, gt_ab (B, 2, H, W)``; ``weight (B, H, W)`` >= 0 per pixel or None (all 1)."""
        d = ab_distance(pred_ab, gt_ab)
        if weight is not None:
            if weight.shape != d.shape:
                raise ValueError(f"weight: expected shape {tuple(d.shape)}, got {tuple(weight.shape)}")
            if not torch.isfinite(weight).all() or (weight < 0).any():
                raise ValueError("weight: must be finite and >= 0")
        # d <= t  <=>  ceil(d) <= t for integer t
        k = torch.ceil(d).clamp_(max=self.max_threshold + 1).long().flatten()
        w = None if weight is None else weight.flatten().to(torch.float64)
        self.hist += torch.bincount(k, weights=w, minlength=self.max_threshold + 2).to("cpu", torch.float64)

    @property
    def total(self) -> float:
        return float(self.hist.sum())

    def curve(self) -> torch.Tensor:
        """``(max_threshold + 1,)`` float64 cumulative share in [0, 1] at thresholds 0..max."""
        if self.total <= 0:
            raise ValueError("AucMeter: no pixels (or zero total weight) accumulated")
        return torch.cumsum(self.hist, 0)[: self.max_threshold + 1] / self.total

    def auc(self) -> float:
        """Area under the cumulative curve, normalized to 100 (%)."""
        return float(self.curve().mean() * 100.0)


def auc(pred_ab: torch.Tensor, gt_ab: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """AuC (%) of one batch, pixels pooled: see :class:`AucMeter`."""
    m = AucMeter()
    m.update(pred_ab, gt_ab, weight)
    return m.auc()


def auc_class_weights(prior: torch.Tensor, sigma: float = PRIOR_SIGMA) -> torch.Tensor:
    """Per-bin weights of the rebalanced AuC: Eq. 2.4 with ``lambda = 0``, ``(Q,)`` -> ``(Q,)`` float64.

    ``w ~ 1 / p_smoothed`` normalized so ``sum(p_smoothed * w) == 1``. Bins whose smoothed prior is 0 would get
    an infinite weight; they get the largest finite weight instead (logged), so one unseen colour cannot turn
    the metric into NaN.
    """
    from chromaflow.color import rebalance_weights, smooth_prior

    p = torch.as_tensor(prior, dtype=torch.float64)
    if p.ndim != 1 or not torch.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"prior: expected a (Q,) non-negative finite vector with positive sum, got {tuple(p.shape)}")
    p = p / p.sum()
    ps = torch.as_tensor(smooth_prior(p, sigma=sigma), dtype=torch.float64)
    # p~ underflows (to 0 or a subnormal) far from a concentrated prior: 1 / p~ would be infinite there
    bad = ~torch.isfinite(1.0 / ps)
    if not bad.any():
        return torch.as_tensor(rebalance_weights(p, lam=0.0, sigma=sigma), dtype=torch.float64)
    log.warning("rebalanced AuC: %d bins have zero smoothed prior; capping their weight", int(bad.sum()))
    w = 1.0 / ps.masked_fill(bad, 1.0)  # 1 / p~ on the other bins (Eq. 2.4 with lambda = 0)
    w = w.masked_fill(bad, float(w[~bad].max()))
    return w / (ps * w).sum()


def pixel_class_weights(gt_ab: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Weight of each pixel by its ground-truth nearest bin: ``gt_ab (B, 2, H, W)`` -> ``(B, H, W)``."""
    from chromaflow.color import encode_hard

    _check_ab("gt_ab", gt_ab)
    q = encode_hard(gt_ab)
    return class_weights.to(q.device)[q]


def _as_uint8_rgb(name: str, rgb: torch.Tensor) -> torch.Tensor:
    if not isinstance(rgb, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(rgb).__name__}")
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(rgb.shape)}")
    if rgb.dtype != torch.uint8:
        raise TypeError(f"{name}: expected uint8 RGB in [0, 255], got {rgb.dtype}")
    return rgb


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image on uint8 RGB: ``(B, 3, H, W)`` x2 -> ``(B,)`` float64 (inf where identical)."""
    _as_uint8_rgb("pred", pred)
    _as_uint8_rgb("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    mse = (pred.double() - gt.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse)


def colorfulness_m3(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness M3 per image: ``(B, 3, H, W)`` -> ``(B,)`` float64.

    ``rg = R - G``, ``yb = (R + G) / 2 - B`` on RGB in [0, 255];
    ``M3 = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)`` (population std over pixels).
    uint8 input is in [0, 255]; float input is taken in [0, 1] and scaled by 255.
    """
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb: expected a (B, 3, H, W) tensor, got {getattr(rgb, 'shape', type(rgb))}")
    x = rgb.double() if rgb.dtype == torch.uint8 else rgb.double() * 255.0
    r, g, b = x[:, 0].flatten(1), x[:, 1].flatten(1), x[:, 2].flatten(1)
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean


def mean_chroma(ab: torch.Tensor) -> torch.Tensor:
    """Mean chroma ``sqrt(a^2 + b^2)`` per image: ``(B, 2, H, W)`` -> ``(B,)`` float64."""
    _check_ab("ab", ab)
    return torch.linalg.vector_norm(ab.double(), dim=1).flatten(1).mean(1)


def mean_or_nan(values: list[float] | torch.Tensor) -> float:
    """Mean of per-image values; ``inf`` if any is infinite (PSNR of identical images), ``nan`` if empty."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        return math.nan
    return float(v.mean())
