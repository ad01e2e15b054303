"""encode_hard / encode_soft / soft_cross_entropy against brute-force nearest neighbours and dense CE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from chromaflow.color import ab_bins, encode_hard, encode_soft, rgb_to_lab, soft_cross_entropy
from chromaflow.color.constants import Q

# the thesis's numbers as literals, so a changed constant in the code cannot change the reference too
SOFT_SIGMA = 5.0  # footnote 3: Gaussian kernel of the soft-encoding, in ab units
SOFT_K_PAPER = 5  # nearest neighbours in the thesis text (ch. 2)
SOFT_K_REFERENCE = 10  # nearest neighbours in the released code and ch. 3.3.2


def _brute(ab: torch.Tensor, k: int, sigma: float = SOFT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over all Q bins in float64: (idx (N, k), w (N, k)); ties to the lower bin index."""
    x = ab.double().permute(0, 2, 3, 1).reshape(-1, 2).clamp(-110, 110).numpy()
    c = ab_bins(dtype=torch.float64).numpy()
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(d2, idx, 1)
    w = np.exp(-dk / (2 * sigma**2))
    return idx, w / w.sum(1, keepdims=True)


def _flat(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()


def _random_ab(n: int, seed: int = 0, scale: float = 120.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 2, n, 1, generator=g, dtype=torch.float64) * 2 - 1) * scale


@pytest.mark.parametrize("k", [1, SOFT_K_PAPER, SOFT_K_REFERENCE, 32])
def test_soft_matches_brute_force_random(k):
    ab = _random_ab(4_000, seed=k)  # includes values outside [-110, 110] (clamped)
    idx, w = encode_soft(ab, k=k)
    ridx, rw = _brute(ab, k)
    assert idx.shape == (2, k, 4_000, 1) and idx.dtype == torch.long
    np.testing.assert_array_equal(_flat(idx), ridx)
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)


def test_defaults_are_the_thesis_numbers():
    """``encode_soft(ab)`` without arguments is the ch. 2 text: 5 nearest bins, sigma 5; the constants say so too."""
    from chromaflow.color import constants

    ab = _random_ab(2_000, seed=11, scale=100.0)
    idx, w = encode_soft(ab)
    ridx, rw = _brute(ab, 5, 5.0)
    np.testing.assert_array_equal(_flat(idx), ridx)
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)
    assert (constants.SOFT_SIGMA, constants.SOFT_K_PAPER, constants.SOFT_K_REFERENCE) == (5.0, 5, 10)
    assert (constants.PRIOR_SIGMA, constants.REBALANCE_LAMBDA, constants.T_ANNEAL) == (5.0, 0.5, 0.38)
    assert (constants.GRID, constants.Q, constants.AB_NORM, constants.MASK_CENT) == (10, 313, 110.0, 0.5)
    assert (constants.AB_MIN, constants.GRID_SIZE, constants.L_CENT, constants.L_NORM) == (-110.0, 23, 50.0, 100.0)
    assert constants.LAB_CONTRACT == {"l_cent": 50.0, "l_norm": 100.0, "ab_norm": 110.0, "mask_cent": 0.5,
                                      "grid": 10, "q": 313, "T": 0.38}  # fmt: skip


def test_ties_on_integer_grid():
    """ab on an integer lattice has many exact ties (e.g. (0, 0) is 10 from 4 bins): lower index first."""
    v = torch.arange(-115, 116, 2.5, dtype=torch.float64)
    a, b = torch.meshgrid(v, v, indexing="ij")
    ab = torch.stack((a, b))[None]  # (1, 2, 93, 93), also 5 units outside the grid
    for k in (1, 5, 10):
        idx, w = encode_soft(ab, k=k)
        ridx, rw = _brute(ab, k)
        np.testing.assert_array_equal(_flat(idx), ridx)
        np.testing.assert_allclose(_flat(w), rw, atol=1e-6)


def test_matches_sklearn_on_real_image(shared_datasets):
    img = Image.open(shared_datasets / "kodak24" / "kodim23.png").convert("RGB")
    rgb = torch.from_numpy(np.array(img)[:256, :384]).permute(2, 0, 1)[None]
    ab = rgb_to_lab(rgb)[:, 1:]  # float32, real ab statistics
    idx, w = encode_soft(ab, k=SOFT_K_REFERENCE)
    x = ab.double().permute(0, 2, 3, 1).reshape(-1, 2).numpy()
    nn = NearestNeighbors(n_neighbors=SOFT_K_REFERENCE, algorithm="ball_tree").fit(ab_bins(dtype=torch.float64))
    dist, ridx = nn.kneighbors(x)
    rw = np.exp(-(dist**2) / (2 * SOFT_SIGMA**2))
    rw /= rw.sum(1, keepdims=True)
    # sklearn's order among exactly tied bins is unspecified: compare as sets per pixel, weights sorted
    np.testing.assert_array_equal(np.sort(_flat(idx), 1), np.sort(ridx, 1))
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)
    np.testing.assert_array_equal(_flat(idx)[:, 0], ridx[:, 0])


def test_hard_is_nearest():
    ab = _random_ab(5000, seed=3, scale=100.0).float()
    hard = encode_hard(ab)
    assert hard.shape == (2, 5000, 1) and hard.dtype == torch.long
    ref = torch.cdist(ab.double().permute(0, 2, 3, 1).reshape(-1, 2), ab_bins(dtype=torch.float64)).argmin(1)
    np.testing.assert_array_equal(hard.reshape(-1).numpy(), ref.numpy())
    idx, _ = encode_soft(ab, k=5)
    assert torch.equal(idx[:, 0], hard)


def test_weights_sum_to_one_and_decrease():
    idx, w = encode_soft(_random_ab(1000).float(), k=10)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.sum(1), torch.ones(2, 1000, 1))
    assert (w[:, :-1] >= w[:, 1:] - 1e-7).all()


def test_encode_exceptions():
    with pytest.raises(TypeError, match="ab"):
        encode_soft(np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"\(1, 3, 2, 2\)"):
        encode_hard(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        encode_soft(torch.full((1, 2, 1, 1), float("nan")))
    with pytest.raises(ValueError, match="k"):
        encode_soft(torch.zeros(1, 2, 1, 1), k=0)


def test_soft_cross_entropy_vs_dense_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, Q, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    idx, w = encode_soft(_random_ab(30, seed=1, scale=90.0).reshape(2, 2, 6, 5), k=5)
    dense = torch.zeros(2, Q, 6, 5, dtype=torch.float64).scatter_(1, idx, w)  # reference only: dense target
    v = torch.rand(2, 6, 5, generator=g, dtype=torch.float64)
    ref = (F.cross_entropy(logits, dense, reduction="none") * v).mean()
    ours = soft_cross_entropy(logits, idx, w, pixel_weight=v)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(soft_cross_entropy(logits, idx, w), F.cross_entropy(logits, dense))
    g1 = torch.autograd.grad(ours, logits)[0]
    g2 = torch.autograd.grad(ref, logits)[0]
    torch.testing.assert_close(g1, g2)


def test_soft_cross_entropy_exceptions():
    logits = torch.zeros(1, Q, 2, 2)
    idx = torch.zeros(1, 5, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="shapes differ"):
        soft_cross_entropy(logits, idx, torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="spatial"):
        soft_cross_entropy(logits, torch.zeros(1, 5, 3, 2, dtype=torch.long), torch.zeros(1, 5, 3, 2))
    with pytest.raises(ValueError, match="pixel_weight"):
        soft_cross_entropy(logits, idx, torch.zeros(1, 5, 2, 2), pixel_weight=torch.ones(2, 2))


def _hard_points(seed: int) -> torch.Tensor:
    """ab on and around the places where the fine lookup is delicate, as (1, 2, n, 1) float64.

    Lattice points and half-lattice points (many bisectors meet there: the sort fallback), fine-cell edges
    (the cell index rounds either way), and tiny perturbations of all of them (near-ties).
    """
    g = torch.Generator().manual_seed(seed)
    lattice = torch.arange(-110, 111, 5, dtype=torch.float64)  # bin centres and their midpoints
    a, b = torch.meshgrid(lattice, lattice, indexing="ij")
    pts = [torch.stack((a.reshape(-1), b.reshape(-1)), 1)]
    edges = -110 + 220 * torch.arange(0, 332, 7, dtype=torch.float64) / 331  # fine-cell edges
    pts.append(torch.stack((edges, edges.flip(0)), 1))
    pts.append(torch.stack((edges, torch.rand(edges.shape, generator=g, dtype=torch.float64) * 220 - 110), 1))
    base = torch.cat(pts)
    for scale in (1e-12, 1e-7, 1e-3, 0.3):
        pts.append(base + torch.randn(base.shape, generator=g, dtype=torch.float64) * scale)
    x = torch.cat(pts)
    return x.T.reshape(1, 2, -1, 1).contiguous()


@pytest.mark.parametrize("k", [2, 3, 8, 16, 17])
def test_soft_matches_brute_force_where_the_lookup_is_delicate(k):
    """Ties, near-ties, cell edges and the sort fallback, on both sides of the fine-table limit (k <= 16)."""
    ab = _hard_points(k)
    idx, w = encode_soft(ab, k=k)
    ridx, rw = _brute(ab, k)
    np.testing.assert_array_equal(_flat(idx), ridx)
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)


def test_soft_batched_float32_with_fallback_pixels_in_every_image():
    ab = torch.cat([_hard_points(1), _hard_points(2) * 0.5, _random_ab(_hard_points(0).shape[2], seed=4)[:1]])
    ab = ab.float()  # (3, 2, n, 1): sort-fallback pixels in each image must land in their own image
    idx, w = encode_soft(ab, k=SOFT_K_REFERENCE)
    ridx, rw = _brute(ab, SOFT_K_REFERENCE)
    assert w.dtype == torch.float32
    np.testing.assert_array_equal(_flat(idx), ridx)
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)
    np.testing.assert_array_equal(encode_hard(ab).reshape(-1).numpy(), ridx[:, 0])


def test_lookup_tables_stay_small():
    from chromaflow.color import encode as enc

    for k in (1, SOFT_K_PAPER, SOFT_K_REFERENCE):
        size = sum(t.nbytes for t in enc._rank_tables_np(k))
        assert size < 8 * 2**20, f"k={k}: {size / 2**20:.1f} MB of lookup tables"


@pytest.fixture
def fixed_path(monkeypatch):
    """Run the colour core's fixed whole-batch path (what GPUs and torch.compile run) on the CPU."""
    from chromaflow.color import lab

    monkeypatch.setattr(lab, "CPU_BLOCKED", False)


@pytest.mark.parametrize("k", [1, SOFT_K_PAPER, SOFT_K_REFERENCE, 17])
def test_fixed_path_matches_brute_force_and_the_blocked_path(k, monkeypatch):
    """The fixed path (one stable sort, no fallback) and the blocked rank path give the same bins, exactly."""
    from chromaflow.color import lab

    ab = torch.cat([_hard_points(k), _hard_points(k + 1) * 0.5], 3)  # (1, 2, n, 2): ties, near-ties, cell edges
    blocked = encode_soft(ab, k=k)
    monkeypatch.setattr(lab, "CPU_BLOCKED", False)
    idx, w = encode_soft(ab, k=k)
    ridx, rw = _brute(ab, k)
    np.testing.assert_array_equal(_flat(idx), ridx)
    np.testing.assert_allclose(_flat(w), rw, atol=1e-6)
    assert torch.equal(idx, blocked[0])
    torch.testing.assert_close(w, blocked[1], rtol=0, atol=1e-12)
    assert torch.equal(encode_hard(ab), torch.from_numpy(ridx[:, 0]).view(1, *ab.shape[2:]))


def test_fixed_path_float32_batch_matches_sklearn(shared_datasets, fixed_path):
    img = Image.open(shared_datasets / "kodak24" / "kodim23.png").convert("RGB")
    rgb = torch.from_numpy(np.array(img)[:128, :192]).permute(2, 0, 1).reshape(3, 2, 64, 192).transpose(0, 1)
    ab = rgb_to_lab(rgb.contiguous())[:, 1:]  # (2, 2, 64, 192) float32
    idx, w = encode_soft(ab, k=SOFT_K_REFERENCE)
    assert idx.shape == (2, SOFT_K_REFERENCE, 64, 192) and w.dtype == torch.float32
    cl = encode_soft(ab.contiguous(memory_format=torch.channels_last), k=SOFT_K_REFERENCE)  # as the engine feeds it
    assert torch.equal(cl[0], idx) and torch.equal(cl[1], w)
    x = ab.double().permute(0, 2, 3, 1).reshape(-1, 2).numpy()
    nn = NearestNeighbors(n_neighbors=SOFT_K_REFERENCE, algorithm="ball_tree").fit(ab_bins(dtype=torch.float64))
    dist, ridx = nn.kneighbors(x)
    rw = np.exp(-(dist**2) / (2 * SOFT_SIGMA**2))
    np.testing.assert_array_equal(np.sort(_flat(idx), 1), np.sort(ridx, 1))
    np.testing.assert_allclose(_flat(w), rw / rw.sum(1, keepdims=True), atol=1e-6)


def test_fixed_path_rejects_nan(fixed_path):
    with pytest.raises(RuntimeError, match="ab: contains NaN"):
        encode_soft(torch.full((1, 2, 1, 1), float("nan")))
