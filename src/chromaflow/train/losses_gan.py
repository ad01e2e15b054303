"""The loss terms of BicycleGAN (thesis ch. 4, Eq. 4.1-4.9) and their weights.

- :func:`lsgan` - the least-squares GAN loss (LSGAN, the thesis's choice over Eq. 4.1's log loss), summed
  over the scales of a multi-scale discriminator;
- :func:`kl_to_prior` - Eq. 4.5, KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form;
- :func:`latent_l1` - Eq. 4.7, ``|z - E(G(A, z))|_1``; :func:`image_l1` - Eq. 4.2, ``|B - G(A, z)|_1``;
- :func:`reparameterize` - z ~ E(B) with the re-parameterization trick.

Reductions (stated, since the weights depend on them): L1 terms are means over all elements (the
original code's ``nn.L1Loss``); the KL is summed over the z dimensions and averaged over the batch (the
original sums over both, at one image per path).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

LAMBDA_IMG = 10.0  # lambda (image L1 of the cVAE path / pix2pix)
LAMBDA_LATENT = 0.5  # lambda_latent (latent regression of the cLR path)
LAMBDA_KL = 0.01  # lambda_KL
LAMBDA_GAN = 1.0  # each adversarial term
REAL, FAKE = 1.0, 0.0  # LSGAN targets


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (bf16 / fp16 under autocast are widened; float64 stays)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def lsgan(scores: torch.Tensor | Sequence[torch.Tensor], real: bool) -> torch.Tensor:
    """``sum_s mean((D_s - t)^2)`` with ``t = 1`` for ``real`` else 0; ``scores``: a score map or one per scale."""
    maps = [scores] if isinstance(scores, torch.Tensor) else list(scores)
    if not maps:
        raise ValueError("lsgan: no discriminator scores given")
    target = REAL if real else FAKE
    return torch.stack([(_wide(s) - target).pow(2).mean() for s in maps]).sum()


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mu, logvar (B, Z)`` -> mean over B of ``1/2 sum_z (mu^2 + exp(logvar) - 1 - logvar)`` (nats, >= 0)."""
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(
            f"kl_to_prior: mu and logvar must both be (B, Z), got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    mu, logvar = _wide(mu), _wide(logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


def latent_l1(z_hat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``mean |z_hat - z|`` over all elements; ``(B, Z)`` each."""
    if z_hat.shape != z.shape:
        raise ValueError(f"latent_l1: shapes differ: {tuple(z_hat.shape)} vs {tuple(z.shape)}")
    return (_wide(z_hat) - _wide(z)).abs().mean()


def image_l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``mean |fake - real|`` over all elements; images ``(B, C, H, W)`` in [-1, 1]."""
    if fake.shape != real.shape:
        raise ValueError(f"image_l1: shapes differ: {tuple(fake.shape)} vs {tuple(real.shape)}")
    return (_wide(fake) - _wide(real)).abs().mean()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """``z = mu + eps * exp(logvar / 2)``, ``eps ~ N(0, I)`` unless given; ``(B, Z)``."""
    eps = torch.randn_like(mu) if eps is None else eps
    return mu + eps * (0.5 * logvar).exp()
