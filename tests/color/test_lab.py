"""rgb_to_lab / lab_to_rgb: kornia's test menu plus the exhaustive 2^24 check against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from chromaflow.color import LabToRgb, RgbToLab, lab, lab_to_rgb, rgb_to_lab

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FLOATS = [torch.float32, torch.float64]


def _all_colours(start: int, stop: int, step: int = 1) -> torch.Tensor:
    """uint8 sRGB colours with codes range(start, stop, step) as a (3, 1, n) tensor (code = r << 16 | g << 8 | b)."""
    v = torch.arange(start, stop, step, dtype=torch.int64)
    return torch.stack(((v >> 16) & 255, (v >> 8) & 255, v & 255)).to(torch.uint8).reshape(3, 1, -1)


def _sk_rgb2lab(rgb: torch.Tensor) -> np.ndarray:
    """skimage reference for a (*, 3, H, W) tensor, returned channel-first."""
    x = rgb.detach().cpu().numpy()
    if x.dtype != np.uint8:
        x = x.astype(np.float64)
    return np.moveaxis(skcolor.rgb2lab(np.moveaxis(x, -3, -1)), -1, -3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_smoke(device, dtype):
    rgb = torch.rand(2, 3, 4, 5, device=device, dtype=dtype)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == dtype and lab.device.type == device
    assert lab_to_rgb(lab).dtype == dtype


@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 3, 4, 5), (2, 3, 1, 1), (2, 2, 3, 6, 3)])
def test_cardinality(shape):
    rgb = torch.rand(shape)
    assert rgb_to_lab(rgb).shape == shape
    assert lab_to_rgb(rgb_to_lab(rgb)).shape == shape
    assert rgb_to_lab((rgb * 255).to(torch.uint8)).shape == shape


def test_exceptions():
    with pytest.raises(TypeError, match="rgb"):
        rgb_to_lab(np.zeros((3, 2, 2)))
    with pytest.raises(TypeError, match="lab"):
        lab_to_rgb([[0.0]])
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        rgb_to_lab(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\)"):
        lab_to_rgb(torch.rand(1, 4, 5, 5))
    with pytest.raises(TypeError, match="int32"):
        rgb_to_lab(torch.zeros(3, 2, 2, dtype=torch.int32))


def test_uint8_dtype_is_float32():
    assert rgb_to_lab(torch.zeros(3, 1, 1, dtype=torch.uint8)).dtype == torch.float32


def test_known_values():
    # white, black, pure red, pure green, pure blue (skimage values, D65)
    rgb = torch.tensor([[1, 0, 1, 0, 0], [1, 0, 0, 1, 0], [1, 0, 0, 0, 1]], dtype=torch.float64).reshape(3, 1, 5)
    lab = rgb_to_lab(rgb).reshape(3, 5).T.numpy()
    expected = skcolor.rgb2lab(rgb.reshape(3, 5).T.numpy()[None])[0]
    np.testing.assert_allclose(lab, expected, atol=1e-9)
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=1e-2)  # white
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=1e-2)  # red (textbook values)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_values_vs_skimage(device, dtype):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    ours = rgb_to_lab(rgb.to(device, dtype)).cpu().double().numpy()
    np.testing.assert_allclose(ours, _sk_rgb2lab(rgb), atol=1e-3 if dtype == torch.float32 else 1e-9)
    lab = torch.from_numpy(_sk_rgb2lab(rgb))
    lab = lab + torch.randn(lab.shape, generator=g, dtype=torch.float64) * 20  # also out-of-gamut colours
    back = lab_to_rgb(lab.to(device, dtype)).cpu().double().numpy()
    with pytest.warns(UserWarning) if (lab[:, 0] - lab[:, 2] / 200 * 116 + 16 < 0).any() else _nullctx():
        ref = np.moveaxis(skcolor.lab2rgb(np.moveaxis(lab.numpy(), 1, -1)), -1, 1)
    np.testing.assert_allclose(back, ref, atol=1e-4 if dtype == torch.float32 else 1e-9)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_uint8_fast_path_matches_float64_path():
    rgb = _all_colours(0, 2**24, 97)
    fast = rgb_to_lab(rgb).double()
    slow = rgb_to_lab(rgb.double() / 255.0)
    assert (fast - slow).abs().max() < 1e-3


def _check_vs_skimage(step: int) -> None:
    worst_fwd = worst_inv = 0.0
    for start in range(0, 2**24, 2**20):
        rgb = _all_colours(start, start + 2**20, step).double() / 255.0  # (3, 1, n)
        ours = rgb_to_lab(rgb)
        ref = skcolor.rgb2lab(rgb.reshape(3, -1).T.numpy()[None])[0]  # (n, 3)
        worst_fwd = max(worst_fwd, float(np.abs(ours.reshape(3, -1).T.numpy() - ref).max()))
        back = lab_to_rgb(ours).reshape(3, -1).T.numpy()
        ref_back = skcolor.lab2rgb(ref[None])[0]
        worst_inv = max(worst_inv, float(np.abs(back - ref_back).max()))
    assert worst_fwd < 1e-3 and worst_inv < 1e-3, (worst_fwd, worst_inv)


@pytest.mark.slow
def test_exhaustive_vs_skimage():
    """All 2^24 uint8 sRGB colours, float64, in chunks of 2^20: rgb2lab and lab2rgb within 1e-3 of skimage (~100 s)."""
    _check_vs_skimage(step=1)


def test_every_41st_colour_vs_skimage():
    """The fast default variant of the exhaustive test: every 41st of the 2^24 colours (409k, all chunks)."""
    _check_vs_skimage(step=41)


def _check_round_trip(dtype: torch.dtype, step: int) -> None:
    for start in range(0, 2**24, 2**22):
        rgb = _all_colours(start, start + 2**22, step)
        lab = rgb_to_lab(rgb).to(dtype) if dtype == torch.float32 else rgb_to_lab(rgb.double() / 255.0)
        back = (lab_to_rgb(lab) * 255.0).round().to(torch.uint8)
        assert torch.equal(back, rgb), f"round trip differs at {int((back != rgb).any(0).sum())} colours"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", FLOATS)
def test_round_trip_uint8_exhaustive(dtype):
    """sRGB uint8 -> Lab -> sRGB is exact after rounding, for all 2^24 colours (float32: uint8 fast path)."""
    _check_round_trip(dtype, step=1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_round_trip_uint8_strided(dtype):
    """Default variant: every 37th colour (453k) of the uint8 cube round-trips exactly."""
    _check_round_trip(dtype, step=37)


def test_gradcheck():
    rgb = (torch.rand(1, 3, 3, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    lab = rgb_to_lab(rgb.detach() * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: lab_to_rgb(x, clip=False), (lab,))


def test_gradients_finite_at_zero():
    rgb = torch.zeros(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = torch.zeros(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    lab_to_rgb(lab, clip=False).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_clip_flag():
    lab = torch.tensor([50.0, 100.0, -100.0], dtype=torch.float64).reshape(3, 1, 1)  # out of gamut
    raw = lab_to_rgb(lab, clip=False)
    assert raw.min() < 0 or raw.max() > 1
    assert torch.equal(lab_to_rgb(lab), raw.clamp(0, 1))


def test_module_equals_function():
    rgb = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(RgbToLab()(rgb), rgb_to_lab(rgb))
    lab = rgb_to_lab(rgb)
    torch.testing.assert_close(LabToRgb()(lab), lab_to_rgb(lab))
    torch.testing.assert_close(LabToRgb(clip=False)(lab), lab_to_rgb(lab, clip=False))


def test_uint8_non_contiguous_input():
    """A channels-last image viewed as (B, 3, H, W) (what permute gives) converts like its contiguous copy."""
    hwc = torch.randint(0, 256, (1, 17, 23, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = hwc.permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    torch.testing.assert_close(rgb_to_lab(x), rgb_to_lab(x.contiguous()), rtol=0, atol=0)


def test_fixed_path_equals_the_blocked_cpu_path_and_skimage(monkeypatch):
    """The whole-batch op sequence (GPUs, torch.compile) vs the CPU's cache-sized blocks: the same maths."""
    from chromaflow.color import lab

    rgb = torch.randint(0, 256, (3, 3, 67, 129), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    blocked = rgb_to_lab(rgb)
    monkeypatch.setattr(lab, "CPU_BLOCKED", False)
    fixed = rgb_to_lab(rgb)
    assert fixed.dtype == torch.float32
    # float32 rounding: the matrix as a sum vs fused multiply-adds; 1 ulp of f is ~3e-5 in a (x 500)
    torch.testing.assert_close(fixed, blocked, rtol=0, atol=1e-4)
    assert np.abs(fixed.double().numpy() - _sk_rgb2lab(rgb)).max() < 1e-3


def test_device_cached_keys_on_the_device_a_tensor_reports():
    """A table warmed up for ``cpu:0`` (or ``cuda``) is the one a step on ``x.device`` (``cpu``, ``cuda:0``) finds:
    built once. On the H200 a miss here built the Lab tables inside the step, a host sync (the gpu test caught it)."""
    builds = []

    @lab.device_cached
    def table(device: torch.device) -> torch.Tensor:
        builds.append(device)
        return torch.zeros(1, device=device)

    first = table(torch.device("cpu", 0))
    assert table(torch.zeros(1).device) is first
    assert builds == [torch.device("cpu")]
