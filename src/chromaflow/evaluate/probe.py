"""The linear probe of the transfer evaluation (thesis 5.5.1): one multinomial logistic-regression layer on
standardized features, fit by full-batch L-BFGS in torch (scikit-learn's objective with ``C = 1 / (wd N)``);
with several ``wd`` values the one with the best accuracy on a held-out share is refit on all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

DEFAULT_WD = (1e-3, 1e-2, 1e-1)


@dataclass
class LinearProbe:
    """Multinomial logistic regression on standardized features: ``logits = ((x - mean) / std) @ W.T + b``."""

    weight: torch.Tensor  # (K, D)
    bias: torch.Tensor  # (K,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    wd: float
    iterations: int

    def logits(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(x).to(self.weight.device, torch.float32)
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.logits(x).argmax(1)

    def score(self, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
        """Top-1 accuracy in [0, 1]."""
        y = torch.as_tensor(y, device=self.weight.device)
        return float((self.predict(x) == y).float().mean())


def _check_xy(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"linear probe: expected x (N, D) and y (N,) with N >= 1, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or bool((y < 0).any()):
        raise ValueError("linear probe: y must hold non-negative integer class indices")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("linear probe: x contains NaN or infinite values")
    return x, y.long()


def fit_linear_probe(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    n_classes: int | None = None,
    *,
    wd: float = 1e-2,
    max_iter: int = 200,
    device: str | torch.device | None = None,
) -> LinearProbe:
    """Fit one multinomial logistic-regression layer by full-batch L-BFGS.

    Args:
        x: features ``(N, D)`` (any float dtype; computed in float32), y: class indices ``(N,)`` in [0, K).
        n_classes: K (default ``y.max() + 1``).
        wd: L2 penalty on W (not b): minimizes ``mean_i CE_i + wd/2 ||W||^2``.
        max_iter: L-BFGS iterations (strong-Wolfe line search; stops earlier at gradient tolerance).
    """
    x, y = _check_xy(x, y)
    dev = torch.device(device) if device else torch.device("cpu")
    k = int(n_classes if n_classes is not None else int(y.max()) + 1)
    if k < 2 or int(y.max()) >= k:
        raise ValueError(
            f"linear probe: need >= 2 classes and labels below n_classes, got K={k}, max label {int(y.max())}"
        )
    x = x.to(dev, torch.float32)
    y = y.to(dev)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant (e.g. dead ReLU) dims stay 0
    xs = (x - mean) / std
    w = torch.zeros(k, x.shape[1], device=dev, requires_grad=True)
    b = torch.zeros(k, device=dev, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-10)  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w.T + b, y) + 0.5 * wd * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    iters = int(opt.state[opt._params[0]].get("n_iter", 0))
    return LinearProbe(w.detach(), b.detach(), mean, std, wd=float(wd), iterations=iters)


def select_and_fit(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    n_classes: int,
    *,
    wds: Sequence[float] = DEFAULT_WD,
    holdout: float = 0.2,
    max_iter: int = 200,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> LinearProbe:
    """Pick ``wd`` by accuracy on a stratified-by-chance held-out ``holdout`` share of ``(x, y)`` (ties: larger
    ``wd``), then refit on all of it. One ``wd``: fit directly."""
    x, y = _check_xy(x, y)
    wds = sorted(set(float(v) for v in wds))
    if not wds or min(wds) < 0:
        raise ValueError(f"linear probe: wd values must be >= 0, got {wds}")
    if len(wds) > 1:
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_hold = max(1, int(round(holdout * len(y))))
        hold, fit = perm[:n_hold], perm[n_hold:]
        scores = {}
        for v in wds:
            p = fit_linear_probe(x[fit], y[fit], n_classes, wd=v, max_iter=max_iter, device=device)
            scores[v] = p.score(x[hold], y[hold])
        best = max(scores.values())
        chosen = max(v for v, s in scores.items() if s == best)
        log.debug("probe wd selection %s -> %g", scores, chosen)
    else:
        chosen = wds[0]
    return fit_linear_probe(x, y, n_classes, wd=chosen, max_iter=max_iter, device=device)
