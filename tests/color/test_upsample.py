"""Chroma upsampling (color/upsample.py) against a NumPy/SciPy guided filter written from He et al.'s equations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from chromaflow.color.upsample import (
    DEFAULT_UPSAMPLE,
    GUIDED_EPS,
    box_mean,
    guided_filter,
    guided_radius,
    upsample_ab,
)


def _np_box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the window clipped at the borders: zero-padded window sum / window pixel count."""
    size = 2 * r + 1
    s = ndimage.uniform_filter(x, size=size, mode="constant", cval=0.0)
    n = ndimage.uniform_filter(np.ones_like(x), size=size, mode="constant", cval=0.0)
    return s / n


def _np_guided(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He, Sun, Tang 2013, Eqs. 7-8: a = cov(I,p)/(var(I)+eps), b = mean(p) - a mean(I), q = mean(a) I + mean(b)."""
    mI, mp = _np_box_mean(I, r), _np_box_mean(p, r)
    cov = _np_box_mean(I * p, r) - mI * mp
    var = _np_box_mean(I * I, r) - mI * mI
    a = cov / (var + eps)
    b = mp - a * mI
    return _np_box_mean(a, r) * I + _np_box_mean(b, r)


def _photo_like(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """L (B, 1, H, W) in [0, 100] with a hard vertical edge + noise; ab (B, 2, h/8, w/8) in [-110, 110]."""
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(b, 1, h, w, generator=g, dtype=torch.float64) * 10 + 20
    L[..., w // 3 :] += 50
    ab = (torch.rand(b, 2, max(1, h // 8), max(1, w // 8), generator=g, dtype=torch.float64) - 0.5) * 220
    return L, ab


@pytest.mark.parametrize("shape,r", [((13, 17), 2), ((5, 3), 4), ((1, 1), 1), ((40, 29), 0), ((9, 31), 30)])
def test_box_mean_matches_scipy(shape, r):
    x = np.random.default_rng(1).normal(size=(2, 3, *shape))
    ref = np.stack([[_np_box_mean(c, r) for c in im] for im in x])
    np.testing.assert_allclose(box_mean(torch.from_numpy(x), r).numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hw,r,eps", [((37, 53), 3, 1e-3), ((64, 48), 8, 1e-2), ((7, 5), 2, 1e-4), ((3, 2), 5, 1e-3)])
def test_guided_filter_matches_numpy_reference(hw, r, eps):
    L, _ = _photo_like(2, *hw)
    p = torch.randn(2, 2, *hw, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 40
    I = L / 100
    got = guided_filter(I, p, r, eps).numpy()
    ref = np.stack([[_np_guided(I[i, 0].numpy(), p[i, c].numpy(), r, eps) for c in range(2)] for i in range(2)])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-8)


def test_upsample_guided_matches_reference_at_photo_size():
    """The whole guided path at a Kodak-sized image, float32 against the float64 NumPy reference."""
    L, ab = _photo_like(1, 512, 768)
    ab = ab[..., :16, :16]
    got = upsample_ab(ab.float(), L.float(), "guided")
    up = F.interpolate(ab, size=(512, 768), mode="bilinear", align_corners=False)
    r = guided_radius((16, 16), (512, 768))
    assert r == 48
    ref = np.stack([_np_guided(L[0, 0].numpy() / 100, up[0, c].numpy(), r, GUIDED_EPS) for c in range(2)])
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got[0].numpy(), ref, atol=2e-3)


def test_bilinear_is_default_and_equals_interpolate():
    L, ab = _photo_like(2, 45, 61)
    assert DEFAULT_UPSAMPLE == "bilinear"
    want = F.interpolate(ab, size=(45, 61), mode="bilinear", align_corners=False)
    assert torch.equal(upsample_ab(ab, L), want)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (9, 7), (100, 33)])
def test_shapes_any_size(hw):
    L, ab = _photo_like(3, *hw)
    for method in ("bilinear", "guided"):
        out = upsample_ab(ab, L, method)
        assert out.shape == (3, 2, *hw) and torch.isfinite(out).all()


def test_constant_L_gives_box_smoothed_bilinear():
    """A flat guide has var = cov = 0: a = 0 and the output is the twice box-filtered input (no edges to follow)."""
    _, ab = _photo_like(1, 64, 64)
    L = torch.full((1, 1, 64, 64), 37.0, dtype=torch.float64)
    up = F.interpolate(ab, size=(64, 64), mode="bilinear", align_corners=False)
    r = guided_radius(tuple(ab.shape[-2:]), (64, 64))
    want = box_mean(box_mean(up, r), r)
    torch.testing.assert_close(upsample_ab(ab, L, "guided"), want)


def test_guided_follows_an_L_edge_that_bilinear_bleeds_across():
    """Left half dark and red, right half bright and green at 8x8; the guided result keeps the step at the L edge."""
    h = w = 64
    L = torch.full((1, 1, h, w), 20.0)
    L[..., w // 2 :] = 80.0
    ab = torch.zeros(1, 2, 8, 8)
    ab[:, 0, :, :4], ab[:, 0, :, 4:] = 60.0, -60.0
    band = slice(w // 2 - 4, w // 2 + 4)  # within 4 px of the edge
    truth = torch.where(torch.arange(w) < w // 2, 60.0, -60.0)[band]
    err = {m: (upsample_ab(ab, L, m)[0, 0, :, band] - truth).abs().mean() for m in ("bilinear", "guided")}
    assert err["guided"] < 0.6 * err["bilinear"], err


def test_dtypes_and_float32_vs_float64():
    L, ab = _photo_like(2, 50, 70)
    ref = upsample_ab(ab, L, "guided")
    f32 = upsample_ab(ab.float(), L.float(), "guided")
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), ref, atol=1e-3, rtol=0)
    bf = upsample_ab(ab.bfloat16(), L.bfloat16(), "guided")
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf.float()).all()
    assert (bf.double() - ref).abs().max() < 3.0  # bf16 holds ab ~ 100 to 0.5 and L to 0.25


def test_gradients_finite_and_gradcheck():
    L, ab = _photo_like(1, 12, 10)
    ab = ab[..., :3, :2].clone().requires_grad_(True)
    Lg = L.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, l: upsample_ab(a, l, "guided", eps=1e-2), (ab, Lg))
    out = upsample_ab(ab.float(), L.float().requires_grad_(True), "guided")
    out.square().sum().backward()
    assert ab.grad is not None and torch.isfinite(ab.grad).all() and ab.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    L, ab = _photo_like(2, 120, 90)
    cpu = upsample_ab(ab.float(), L.float(), "guided")
    torch.testing.assert_close(upsample_ab(ab.float().cuda(), L.float().cuda(), "guided").cpu(), cpu, atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "bicubic"}, "unknown method 'bicubic'"),
        ({"ab": torch.zeros(1, 3, 4, 4)}, r"ab must be \(B, 2, h, w\)"),
        ({"L": torch.zeros(2, 1, 8, 8)}, r"L must be \(B, 1, H, W\) with B = 1"),
        ({"eps": 0.0, "method": "guided"}, "eps must be > 0"),
    ],
)
def test_bad_input_named(kwargs, match):
    args = {"ab": torch.zeros(1, 2, 4, 4), "L": torch.zeros(1, 1, 8, 8), "method": "bilinear"} | kwargs
    with pytest.raises(ValueError, match=match):
        upsample_ab(**args)
