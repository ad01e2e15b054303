"""Realism PROXIES of the translation evaluation (thesis ch. 4 measures realism with people; we have none):
the Fréchet distance between Gaussians fit to real and generated images' features, and a held-out real-vs-fake
linear classifier.

Everything runs in torch, float64 for the statistics: with ``--portable-kernels`` (MKL in its conditional
reproducibility mode, one thread) the results are the same bits on every x86-64 CPU, as the DVC-hashed
``metrics.json`` needs; numpy's BLAS/LAPACK (OpenBLAS) choose kernels by CPU.

    >>> import torch
    >>> mu, sigma = gaussian_stats(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
    >>> round(frechet_distance(mu, sigma, mu + 1.0, sigma), 6)
    2.0
"""

from __future__ import annotations

import numpy as np
import torch

from chromaflow.evaluate.probe import fit_linear_probe

CLASSIFIER_WD = 1.0  # L2 on the real-vs-fake weights, times 1/N (scikit-learn's C = 1 on standardized features)
CLASSIFIER_ITERS = 500  # L-BFGS iterations


def _f64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64)


def gaussian_stats(feats: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``feats (N, D)``, N >= 2."""
    x = _f64(feats)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"gaussian_stats: expected (N >= 2, D) features, got shape {tuple(x.shape)}")
    mu = x.mean(0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - 1)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.

    ``mu* (D,)``, ``sigma* (D, D)`` symmetric positive semi-definite (numpy or torch). The trace of the matrix
    square root is taken by the eigen trick: ``sigma1 sigma2`` has the eigenvalues of the symmetric PSD
    ``S = r sigma2 r`` with ``r = sigma1^(1/2)``, so ``tr((sigma1 sigma2)^(1/2)) = sum sqrt(eig(S))``. Unlike
    ``scipy.linalg.sqrtm`` of the product it stays exact when the covariances are singular (fewer samples than
    dimensions).
    """
    mu1, mu2 = _f64(mu1).reshape(-1), _f64(mu2).reshape(-1)
    s1, s2 = torch.atleast_2d(_f64(sigma1)), torch.atleast_2d(_f64(sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: shapes {tuple(mu1.shape)}, {tuple(s1.shape)}, {tuple(mu2.shape)}, {tuple(s2.shape)}"
            " do not agree"
        )
    lam, vec = torch.linalg.eigh((s1 + s1.T) / 2)
    r = (vec * lam.clamp(min=0).sqrt()) @ vec.T
    eig = torch.linalg.eigvalsh(r @ ((s2 + s2.T) / 2) @ r)
    diff = mu1 - mu2
    return float(diff @ diff + s1.trace() + s2.trace() - 2.0 * eig.clamp(min=0).sqrt().sum())


def real_fake_scores(real, fake, seed: int = 0) -> np.ndarray:
    """Held-out real-vs-fake classification, scored per input: ``(N,)`` in [0, 1].

    ``real (N, D)``: one real image's features per input; ``fake (N, S, D)``: S samples per input. Inputs are
    split in two seeded halves; a logistic regression (:func:`chromaflow.evaluate.probe.fit_linear_probe`:
    standardized features, L2 ``CLASSIFIER_WD / n``, each real image counted S times so both classes weigh the
    same) trained on one half scores the other, and the other way round. An input's score is
    ``(real judged real + share of its fakes judged fake) / 2``, so the mean over inputs is the balanced accuracy.
    """
    real, fake = _f64(real), _f64(fake)
    if real.ndim != 2 or fake.ndim != 3 or fake.shape[0] != real.shape[0] or fake.shape[2] != real.shape[1]:
        raise ValueError(
            f"real_fake_scores: expected real (N, D) and fake (N, S, D), got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    n, s, d = fake.shape
    if n < 4:
        raise ValueError(f"real_fake_scores: need at least 4 inputs (two per half), got {n}")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    halves = (order[: n // 2], order[n // 2 :])
    scores = torch.zeros(n, dtype=torch.float64)
    for train, test in (halves, halves[::-1]):
        x = torch.cat([real[train].repeat_interleave(s, 0), fake[train].reshape(-1, d)])
        y = torch.cat([torch.ones(len(train) * s), torch.zeros(len(train) * s)]).long()
        probe = fit_linear_probe(x, y, 2, wd=CLASSIFIER_WD / len(y), max_iter=CLASSIFIER_ITERS)
        real_ok = (probe.predict(real[test]) == 1).double()
        fake_ok = (probe.predict(fake[test].reshape(-1, d)) == 0).double().reshape(len(test), s).mean(1)
        scores[test] = 0.5 * (real_ok + fake_ok)
    return scores.numpy()
