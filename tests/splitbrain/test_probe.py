"""Linear probe: separable data -> ~100%, shuffled labels -> chance, same optimum as scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.evaluate.features import resize_features, resized_side
from chromaflow.evaluate.probe import fit_linear_probe, select_and_fit


def _blobs(n_per: int, k: int, d: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + rng.normal(size=(len(y), d))
    return x.astype(np.float32), y


def test_separable_reaches_near_100():
    x, y = _blobs(60, 5, 200, sep=1.0, seed=0)
    xt, yt = _blobs(40, 5, 200, sep=1.0, seed=0)  # same centres (same seed), fresh noise below
    xt = xt + np.random.default_rng(1).normal(size=xt.shape).astype(np.float32) * 0.1
    probe = fit_linear_probe(x, y, 5, wd=1e-3, max_iter=100)
    assert probe.score(x, y) == 1.0
    assert probe.score(xt, yt) >= 0.98


def test_shuffled_labels_give_chance():
    x, y = _blobs(100, 4, 500, sep=1.0, seed=2)
    xt, yt = _blobs(100, 4, 500, sep=1.0, seed=2)
    xt = xt + np.random.default_rng(3).normal(size=xt.shape).astype(np.float32)
    y_shuffled = np.random.default_rng(4).permutation(y)
    probe = select_and_fit(x, y_shuffled, 4, wds=(1e-2, 1e-1, 1.0), max_iter=100)
    acc = probe.score(xt, yt)
    assert abs(acc - 0.25) < 0.08  # 400 test points: chance 25% +- 2 sigma
    assert fit_linear_probe(x, y, 4, max_iter=100).score(xt, yt) > 0.9  # the same data, unshuffled


def test_same_optimum_as_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(50, 3, 30, sep=0.3, seed=5)
    wd = 0.05
    probe = fit_linear_probe(x, y, 3, wd=wd, max_iter=500)
    xs = StandardScaler().fit_transform(x)
    ref = LogisticRegression(C=1.0 / (wd * len(y)), max_iter=5000, tol=1e-10).fit(xs, y)
    # multinomial logits are defined up to a per-sample constant: compare centred weights and probabilities
    w_ref = ref.coef_ - ref.coef_.mean(0)
    w = probe.weight.numpy() - probe.weight.numpy().mean(0)
    assert np.allclose(w, w_ref, atol=2e-3)
    p_ref = ref.predict_proba(xs)
    p = torch.softmax(probe.logits(x), 1).numpy()
    assert np.abs(p - p_ref).max() < 1e-3


def test_probe_input_checks():
    with pytest.raises(ValueError, match=r"x \(N, D\)"):
        fit_linear_probe(np.zeros((3, 2, 1)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="integer class"):
        fit_linear_probe(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_probe(np.full((3, 2), np.nan, dtype=np.float32), np.array([0, 1, 0]))


@pytest.mark.parametrize(
    ("channels", "side", "expected"),
    [(96, 55, 10), (256, 27, 6), (384, 13, 5), (256, 13, 6), (24, 32, 20), (64, 8, 8)],  # rows 1-4: Table 5.3 X_d
)
def test_resized_side_matches_table_5_3(channels, side, expected):
    assert resized_side(channels, side, 9216) == expected


def test_resize_is_bilinear_antialiased():
    fmap = torch.rand(2, 96, 55, 55)
    out = resize_features(fmap)
    assert out.shape == (2, 96 * 10 * 10)
    ref = torch.nn.functional.interpolate(fmap, size=(10, 10), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(out, ref.flatten(1))
    small = torch.rand(1, 256, 4, 4)  # already below X_d = 6: kept as is
    assert torch.equal(resize_features(small), small.flatten(1))
