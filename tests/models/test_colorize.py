"""Inference: shapes/ranges, any size, batching, and the recombination checked with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from chromaflow import color
from chromaflow.models import colorize, create_model


def _gray(b=2, h=40, w=56, lo=0.45, hi=0.75) -> torch.Tensor:
    """Gray ramps (3 equal channels) in [lo, hi]."""
    ramp = torch.linspace(lo, hi, w).expand(b, 1, h, w)
    return ramp.repeat(1, 3, 1, 1).clone()


def _lab(rgb: torch.Tensor) -> np.ndarray:
    return rgb2lab(rgb.permute(0, 2, 3, 1).numpy().astype(np.float64))  # skimage: the independent reference


def _constant_model(head: str, ab=(20.0, -30.0)):
    """A net whose output ignores the input: the bin nearest ``ab`` (class) or ``ab`` itself (regression)."""
    m = create_model("eccv16", width=0.125, head=head)
    with torch.no_grad():
        m.head.weight.zero_()
        if head == "class":
            q = int(((color.ab_bins() - torch.tensor(ab)) ** 2).sum(1).argmin())
            m.head.bias.zero_()
            m.head.bias[q] = 30.0
        else:
            m.head.bias.copy_(torch.tensor(ab) / m.config["contract"]["ab_norm"])
    return m


@pytest.mark.parametrize("head", ["class", "regression"])
def test_gray_input_keeps_l_and_gets_predicted_ab(head):
    x = _gray()
    out = colorize(_constant_model(head), x, size=64)
    assert out.shape == x.shape and out.dtype == torch.float32
    ref_in, ref_out = _lab(x), _lab(out)
    assert np.abs(ref_out[..., 0] - ref_in[..., 0]).max() < 0.5  # output L == input L
    assert np.abs(ref_out[..., 1] - 20).max() < 1.0 and np.abs(ref_out[..., 2] + 30).max() < 1.0


def test_any_size_uint8_batching_and_range():
    torch.manual_seed(0)
    m = create_model("eccv16", width=0.125).eval()
    x = (torch.rand(5, 3, 37, 53) * 255).to(torch.uint8)
    out = colorize(m, x, size=32, batch_size=2)
    assert out.shape == (5, 3, 37, 53)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    one = colorize(m, x[3:4], size=32)
    assert torch.allclose(out[3:4], one, atol=1e-5)  # batching does not change an image's result
    # a random net's colours may leave the gamut (clipped), but L stays close to the input's
    dl = np.abs(_lab(out)[..., 0] - _lab(x.float() / 255)[..., 0])
    assert np.median(dl) < 2.0


def test_temperature_defaults_to_contract():
    torch.manual_seed(0)
    m = create_model("eccv16", width=0.125, contract={"T": 0.6}).eval()
    x = _gray(1, 32, 32)
    assert torch.equal(colorize(m, x, size=32), colorize(m, x, size=32, T=0.6))
    assert not torch.equal(colorize(m, x, size=32), colorize(m, x, size=32, T=1.0))
    assert m.training is False


def test_bad_inputs():
    m = create_model("eccv16", width=0.125)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        colorize(m, torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="uint8 or float"):
        colorize(m, torch.ones(1, 3, 8, 8, dtype=torch.int32))
