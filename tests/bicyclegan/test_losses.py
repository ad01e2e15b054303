"""BicycleGAN loss terms against hand-computed values and independent references (NumPy, torch.distributions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.train import losses_gan as L


def test_thesis_weights():
    assert (L.LAMBDA_IMG, L.LAMBDA_LATENT, L.LAMBDA_KL) == (10.0, 0.5, 0.01)


def test_lsgan_on_known_scores():
    s1 = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    s2 = torch.tensor([[0.0]])
    # real: mean((s - 1)^2) = (0 + 1 + 0.25 + 1) / 4 = 0.5625, plus (0 - 1)^2 = 1 for the second scale
    assert L.lsgan([s1, s2], True).item() == pytest.approx(1.5625)
    # fake: mean(s^2) = (1 + 0 + 0.25 + 4) / 4 = 1.3125, plus 0
    assert L.lsgan([s1, s2], False).item() == pytest.approx(1.3125)
    assert L.lsgan(s1, True).item() == pytest.approx(0.5625)  # a single map
    with pytest.raises(ValueError, match="no discriminator scores"):
        L.lsgan([], True)


def _kl_numpy(mu: np.ndarray, logvar: np.ndarray) -> float:
    """KL(N(mu, s^2) || N(0, 1)) per dimension from the general two-Gaussian formula
    ``log(s_q / s_p) + (s_p^2 + (mu_p - mu_q)^2) / (2 s_q^2) - 1/2``, summed over z, averaged over the batch."""
    s_p, s_q, mu_q = np.exp(0.5 * logvar), 1.0, 0.0
    per_dim = np.log(s_q / s_p) + (s_p**2 + (mu - mu_q) ** 2) / (2 * s_q**2) - 0.5
    return float(per_dim.sum(1).mean())


def test_kl_against_numpy_and_torch_distributions():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(4, 8))
    logvar = rng.normal(scale=0.7, size=(4, 8))
    got = L.kl_to_prior(torch.from_numpy(mu), torch.from_numpy(logvar)).item()
    assert got == pytest.approx(_kl_numpy(mu, logvar), rel=1e-12)
    p = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
    q = torch.distributions.Normal(torch.zeros(4, 8, dtype=torch.float64), torch.ones(4, 8, dtype=torch.float64))
    assert got == pytest.approx(torch.distributions.kl_divergence(p, q).sum(1).mean().item(), rel=1e-12)


def test_kl_hand_values():
    # mu = 1, logvar = 0 in one dim: 1/2 * (1 + 1 - 1 - 0) = 0.5; at the prior it is 0
    assert L.kl_to_prior(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)).item() == pytest.approx(0.5)
    assert L.kl_to_prior(torch.zeros(3, 8), torch.zeros(3, 8)).item() == 0.0
    # logvar = log 4 (s = 2): 1/2 * (0 + 4 - 1 - log 4) = 1.5 - log 2
    assert L.kl_to_prior(torch.zeros(1, 1), torch.full((1, 1), np.log(4.0))).item() == pytest.approx(1.5 - np.log(2))
    with pytest.raises(ValueError, match=r"must both be \(B, Z\)"):
        L.kl_to_prior(torch.zeros(2, 8), torch.zeros(2, 4))


def test_kl_gradient_float64():
    mu = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(L.kl_to_prior, (mu, logvar))
    L.kl_to_prior(mu, logvar).backward()
    # d/dmu = mu / B, d/dlogvar = (exp(logvar) - 1) / (2B)
    torch.testing.assert_close(mu.grad, mu.detach() / 2)
    torch.testing.assert_close(logvar.grad, (logvar.detach().exp() - 1) / 4)


def test_latent_and_image_l1_hand_values():
    z = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    z_hat = torch.tensor([[0.0, -2.0], [1.0, 3.0]])
    assert L.latent_l1(z_hat, z).item() == pytest.approx((1 + 0 + 0.5 + 3) / 4)
    fake, real = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), -0.5)
    assert L.image_l1(fake, real).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        L.latent_l1(z, z[:1])
    with pytest.raises(ValueError, match="shapes differ"):
        L.image_l1(fake, real[..., :1])


def test_low_precision_inputs_are_widened():
    z = torch.tensor([[1.0, -2.0]], dtype=torch.bfloat16)
    assert L.latent_l1(z, torch.zeros_like(z)).dtype == torch.float32
    assert L.lsgan(torch.ones(1, 1, 2, 2, dtype=torch.bfloat16), False).dtype == torch.float32


def test_reparameterize():
    mu, logvar, eps = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, float(np.log(9.0))]]), torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(L.reparameterize(mu, logvar, eps), torch.tensor([[1.5, -1.0]]))  # 2 + (-1) * 3
    torch.manual_seed(0)
    z = L.reparameterize(torch.full((20000, 1), 3.0), torch.full((20000, 1), float(np.log(0.25))))
    assert abs(z.mean().item() - 3.0) < 0.02 and abs(z.std().item() - 0.5) < 0.02
