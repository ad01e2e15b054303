"""Suggested palette (thesis ch. 3.3.2): weighted k-means equals k-means on the drawn samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.color.palette import soften, suggest_palette, weighted_kmeans


def test_weighted_kmeans_matches_sklearn_on_replicated_points():
    """Integer weights == replicated points: sklearn KMeans with sample_weight finds the same partition cost."""
    import sklearn.cluster as sklearn

    rng = np.random.default_rng(0)
    centres = np.array([[-60, 40], [0, 0], [50, 50], [30, -70]], float)
    pts = np.concatenate([c + rng.normal(0, 4, (20, 2)) for c in centres])
    w = rng.integers(1, 10, len(pts)).astype(float)
    ours, mass = weighted_kmeans(torch.tensor(pts), torch.tensor(w), k=4)
    ref = sklearn.KMeans(4, n_init=10, random_state=0).fit(pts, sample_weight=w)

    def cost(c):
        d = ((pts[:, None] - np.asarray(c)[None]) ** 2).sum(-1).min(1)
        return (d * w).sum()

    assert cost(ours.numpy()) == pytest.approx(cost(ref.cluster_centers_), rel=1e-6)
    assert mass.sum().item() == pytest.approx(1.0)
    assert torch.all(mass[:-1] >= mass[1:])  # most likely first


def test_palette_finds_the_modes_of_a_bimodal_distribution():
    from chromaflow.color import ab_bins

    bins = ab_bins().double()
    logits = -((bins - torch.tensor([40.0, 60.0])) ** 2).sum(1) / 50
    logits = torch.logaddexp(logits, -((bins - torch.tensor([-30.0, -40.0])) ** 2).sum(1) / 50 - 0.5)
    probs = torch.softmax(logits, 0)
    ab, w = suggest_palette(probs, k=2, temperature=1.0)
    torch.testing.assert_close(ab[0], torch.tensor([40.0, 60.0], dtype=ab.dtype), atol=3, rtol=0)
    torch.testing.assert_close(ab[1], torch.tensor([-30.0, -40.0], dtype=ab.dtype), atol=3, rtol=0)
    assert w[0] > w[1]


def test_soften_and_bad_input():
    p = torch.tensor([0.7, 0.2, 0.1])
    s = soften(p, 2.0)
    assert s.sum().item() == pytest.approx(1.0) and s[0] < p[0]
    with pytest.raises(ValueError):
        soften(p, 0.0)
    with pytest.raises(ValueError, match="313"):
        suggest_palette(torch.ones(10) / 10)
    with pytest.raises(ValueError, match="zero"):
        weighted_kmeans(torch.zeros(3, 2), torch.zeros(3))


def test_ab_swatch_gamut_matches_skimage():
    import skimage.color as skimage

    from chromaflow.color.palette import ab_swatch

    rgb, ok = ab_swatch(60.0, resolution=45)
    axis = np.linspace(-110, 110, 45)
    b, a = np.meshgrid(axis[::-1], axis, indexing="ij")
    lab = np.stack([np.full_like(a, 60.0), a, b], -1)
    xyz = skimage.lab2xyz(lab)
    lin = xyz @ np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                          [0.0556434, -0.2040259, 1.0572252]]).T  # fmt: skip
    ref_ok = ((lin >= -1e-6) & (lin <= 1 + 1e-6)).all(-1)
    assert (ok.numpy() == ref_ok).mean() > 0.995  # boundary pixels may differ by rounding
    assert ok[22, 22]  # a = b = 0 is always displayable
    assert not ok[0, 0]  # (a, b) = (-110, 110) at L=60 is not
    with pytest.raises(ValueError):
        ab_swatch(120.0)
