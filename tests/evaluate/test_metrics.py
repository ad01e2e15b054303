"""Metrics vs hand-computed values, the thesis's equations, scikit-image and the paper's formulas."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from chromaflow.evaluate import metrics as M


def _ab_with_chroma(chroma: np.ndarray, seed: int = 0) -> torch.Tensor:
    """(1, 2, 1, N) ab whose pixel i has chroma chroma[i] at a random hue."""
    rng = np.random.default_rng(seed)
    hue = rng.uniform(0, 2 * np.pi, chroma.size)
    ab = np.stack([chroma * np.cos(hue), chroma * np.sin(hue)])
    return torch.from_numpy(ab).view(1, 2, 1, -1)


def test_auc_ground_truth_is_100():
    gt = torch.randn(2, 2, 8, 9, generator=torch.Generator().manual_seed(0)) * 40
    assert M.auc(gt.clone(), gt) == pytest.approx(100.0)


def test_auc_gray_closed_form():
    # gray predicts ab = 0, so pixel i's error is its chroma c_i: share within t is mean(c_i <= t)
    chroma = np.array([0.0, 3.5, 6.75, 12.25, 40.4, 80.5, 149.5, 151.2, 220.3])
    gt = _ab_with_chroma(chroma)
    expected = 100 * np.mean([np.mean(chroma <= t) for t in range(151)])
    assert M.auc(torch.zeros_like(gt), gt) == pytest.approx(expected, abs=1e-9)
    # and an exact curve: at t=7 the pixels 0, 3.5 and 6.75 are in (non-integer chroma: no rounding ties)
    m = M.AucMeter()
    m.update(torch.zeros_like(gt), gt)
    assert m.curve()[7].item() == pytest.approx(3 / 9)
    assert m.curve()[6].item() == pytest.approx(2 / 9)


def test_auc_is_pooled_over_batches():
    a = _ab_with_chroma(np.array([5.5, 60.2]), 1)
    b = _ab_with_chroma(np.array([100.7, 0.0, 30.1]), 2)
    m = M.AucMeter()
    m.update(torch.zeros_like(a), a)
    m.update(torch.zeros_like(b), b)
    c = np.array([5.5, 60.2, 100.7, 0.0, 30.1])
    assert m.auc() == pytest.approx(100 * np.mean([np.mean(c <= t) for t in range(151)]))


def test_auc_weighted_by_hand():
    chroma = np.array([0.0, 10.5, 200.0])
    gt = _ab_with_chroma(chroma)
    w = torch.tensor([[[1.0, 2.0, 5.0]]], dtype=torch.float64)  # (1, 1, 3)
    # weighted share within t: (1*[0<=t] + 2*[10.5<=t] + 5*[200<=t]) / 8
    expected = 100 * np.mean([(1 * (t >= 0) + 2 * (t >= 10.5)) / 8 for t in range(151)])
    assert M.auc(torch.zeros_like(gt), gt, w) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (torch.zeros(1, 3, 2, 2), ValueError, r"^pred_ab: expected shape \(B, 2, H, W\), got \(1, 3, 2, 2\)$"),
        (torch.zeros(2, 2, 2), ValueError, r"^pred_ab: expected shape \(B, 2, H, W\), got \(2, 2, 2\)$"),
        (np.zeros((1, 2, 2, 2)), TypeError, r"^pred_ab: expected a torch.Tensor, got ndarray$"),
    ],
    ids=["3ch", "3d", "numpy"],
)
def test_auc_rejects_bad_shapes(bad, error, message):
    """The error names the input and the reason (whole message: a garbled one fails)."""
    with pytest.raises(error, match=message):
        M.auc(bad, torch.zeros(1, 2, 2, 2))
    with pytest.raises(error, match=message.replace("pred_ab", "gt_ab")):
        M.auc(torch.zeros(1, 2, 2, 2), bad)


def test_auc_input_rules_and_their_messages():
    """Each rule of the meter, at its edge, with the whole message (make mutate found these untested)."""
    z = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"^pred_ab \(1, 2, 2, 2\) and gt_ab \(1, 2, 2, 3\) differ in shape$"):
        M.auc(z, torch.zeros(1, 2, 2, 3))
    assert M.auc(torch.zeros(1, 2, 2, 2, dtype=torch.int64), torch.full((1, 2, 2, 2), 3)) == pytest.approx(
        100 * (151 - 5) / 151
    )  # integer ab is measured in float: error 3 * sqrt(2) = 4.24 is within t for t >= 5
    assert M.AucMeter(0).max_threshold == 0  # 0 is a valid largest threshold
    with pytest.raises(ValueError, match=r"^max_threshold must be >= 0, got -1$"):
        M.AucMeter(-1)
    with pytest.raises(ValueError, match=r"^weight: expected shape \(1, 2, 2\), got \(1, 2\)$"):
        M.auc(z, z, torch.ones(1, 2))
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^weight: must be finite and >= 0$"):
            M.auc(z, z, torch.full((1, 2, 2), bad))
    assert M.auc(z, z, torch.full((1, 2, 2), 0.5)) == 100.0  # weights below 1 are fine
    assert M.auc(torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 3.0)) == pytest.approx(100 * 146 / 151)  # 1 pixel
    assert M.mean_or_nan([]) != M.mean_or_nan([])  # nan for no images
    assert M.mean_or_nan([3.0]) == 3.0 and M.mean_or_nan([1.0, float("inf")]) == float("inf")
    m = M.AucMeter()
    m.update(z, z, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"^AucMeter: no pixels \(or zero total weight\) accumulated$"):
        m.auc()


def test_auc_empty_meter_raises():
    with pytest.raises(ValueError, match="no pixels"):
        M.AucMeter().auc()


def test_psnr_matches_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 256, (3, 3, 17, 23), generator=g, dtype=torch.uint8)
    noise = torch.randint(-20, 21, gt.shape, generator=g)
    pred = (gt.int() + noise).clamp(0, 255).to(torch.uint8)
    ours = M.psnr(pred, gt)
    for i in range(3):
        ref = peak_signal_noise_ratio(gt[i].numpy(), pred[i].numpy(), data_range=255)
        assert ours[i].item() == pytest.approx(ref, rel=1e-10)
    assert math.isinf(M.psnr(gt, gt)[0].item())


def test_psnr_colourfulness_chroma_input_rules_and_their_messages():
    u8 = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    for name, args in (("pred", (torch.rand(1, 3, 4, 4), u8)), ("gt", (u8, torch.rand(1, 3, 4, 4)))):
        with pytest.raises(TypeError, match=rf"^{name}: expected uint8 RGB in \[0, 255\], got torch.float32$"):
            M.psnr(*args)
        with pytest.raises(TypeError, match=rf"^{name}: expected a torch.Tensor, got ndarray$"):
            M.psnr(*([u8.numpy(), u8] if name == "pred" else [u8, u8.numpy()]))
        for shape in ((1, 4, 4, 4), (3, 4, 4)):
            wrong = torch.zeros(shape, dtype=torch.uint8)
            with pytest.raises(
                ValueError, match=rf"^{name}: expected shape \(B, 3, H, W\), got {re.escape(str(shape))}$"
            ):
                M.psnr(*([wrong, u8] if name == "pred" else [u8, wrong]))
    with pytest.raises(ValueError, match=r"^pred \(1, 3, 4, 4\) and gt \(1, 3, 4, 5\) differ in shape$"):
        M.psnr(u8, torch.zeros(1, 3, 4, 5, dtype=torch.uint8))
    for bad in (np.zeros((1, 3, 4, 4)), torch.zeros(1, 2, 4, 4), torch.zeros(3, 4, 4)):
        shown = re.escape(str(getattr(bad, "shape", "")))
        with pytest.raises(ValueError, match=rf"^rgb: expected a \(B, 3, H, W\) tensor, got {shown}$"):
            M.colorfulness_m3(bad)
    with pytest.raises(ValueError, match=r"^ab: expected shape \(B, 2, H, W\), got \(1, 3, 2, 2\)$"):
        M.mean_chroma(torch.zeros(1, 3, 2, 2))


def _m3_reference(img: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003), M3, written directly from the paper on an (H, W, 3) image in [0, 255]."""
    R, G, B = (img[..., k].astype(np.float64).ravel() for k in range(3))
    rg = R - G
    yb = 0.5 * (R + G) - B
    sigma = np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2)
    mu = np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2)
    return sigma + 0.3 * mu


def test_colorfulness_matches_paper_formula():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    imgs[1] = imgs[1, ..., :1]  # a gray image: M3 == 0
    ours = M.colorfulness_m3(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    for i in range(4):
        assert ours[i].item() == pytest.approx(_m3_reference(imgs[i]), rel=1e-10)
    assert ours[1].item() == pytest.approx(0.0, abs=1e-12)
    # float input in [0, 1] is scaled to [0, 255]
    f = M.colorfulness_m3(torch.from_numpy(imgs).permute(0, 3, 1, 2).double() / 255)
    assert torch.allclose(f, ours)


def test_mean_chroma():
    chroma = np.array([0.0, 10.0, 25.0, 3.0])
    assert M.mean_chroma(_ab_with_chroma(chroma)).item() == pytest.approx(chroma.mean())


# ---- class-rebalanced AuC (needs chromaflow.color)


@pytest.fixture(scope="module")
def color():
    import chromaflow.color

    return chromaflow.color


def test_class_weights_are_eq_2_4_with_lambda_0(color):
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.dirichlet(np.ones(313) * 0.3))
    w = M.auc_class_weights(p)
    ps = torch.as_tensor(color.smooth_prior(p), dtype=torch.float64)
    assert torch.isfinite(w).all()
    # lambda = 0: w ~ 1 / p_smoothed and E_p_smoothed[w] = 1  =>  w * p_smoothed == 1 / Q on every bin
    assert torch.allclose(w * ps, torch.full_like(w, 1 / 313), rtol=1e-6)
    assert float((ps * w).sum()) == pytest.approx(1.0)


def test_class_weight_prior_rules_and_the_zero_prior_cap(color, caplog):
    msg = r"^prior: expected a \(Q,\) non-negative finite vector with positive sum, got \({}\)$"
    for bad, shape in ((torch.ones(2, 313), "2, 313"), (torch.full((313,), float("nan")), "313,"),
                       (-torch.ones(313), "313,"), (torch.zeros(313), "313,")):  # fmt: skip
        with pytest.raises(ValueError, match=msg.format(shape)):
            M.auc_class_weights(bad)
    p = torch.rand(313, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(M.auc_class_weights(p * 7), M.auc_class_weights(p))  # any scale: normalized
    # all mass on one corner bin: far bins' smoothed prior underflows to 0; their weight is capped, not inf
    corner = torch.zeros(313, dtype=torch.float64)
    corner[0] = 1
    ps = torch.as_tensor(color.smooth_prior(corner), dtype=torch.float64)
    zero = ~torch.isfinite(1 / ps)  # 0 or subnormal
    assert zero.any()
    with caplog.at_level("WARNING"):
        w = M.auc_class_weights(corner)
    assert f"{int(zero.sum())} bins have zero smoothed prior" in caplog.text
    assert torch.isfinite(w).all() and (w[zero] == w[~zero].max()).all()
    wp = (w * ps)[~zero]  # the other bins keep w ~ 1 / p~ (Eq. 2.4 with lambda = 0)
    torch.testing.assert_close(wp, torch.full_like(wp, float(wp[0])), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"^gt_ab: expected shape \(B, 2, H, W\), got \(1, 3, 2, 2\)$"):
        M.pixel_class_weights(torch.zeros(1, 3, 2, 2), w)
    assert float((ps * w).sum()) == pytest.approx(1.0)


def test_rebalanced_auc_by_hand(color):
    """Gray pixels predicted exactly, saturated pixels wrong by > 150: weights decide the score."""
    bins = color.ab_bins().double()  # (Q, 2)
    q_gray = int(torch.argmin(bins.norm(dim=1)))
    q_sat = int(torch.argmax(bins.norm(dim=1)))
    p = torch.full((313,), 1.0)
    p[q_gray] = 1000.0  # desaturated colours are common
    w = M.auc_class_weights(p)
    n_gray, n_sat = 30, 2
    gt = torch.cat([bins[q_gray].repeat(n_gray, 1), bins[q_sat].repeat(n_sat, 1)]).T.reshape(1, 2, 1, -1)
    pred = gt.clone()
    pred[..., n_gray:] = -gt[..., n_gray:]  # error = 2 * |ab| > 150 for the saturated bin
    assert float(2 * bins[q_sat].norm()) > 150
    pw = M.pixel_class_weights(gt, w)
    assert torch.allclose(pw[0, 0, :n_gray], w[q_gray].expand(n_gray))
    assert torch.allclose(pw[0, 0, n_gray:], w[q_sat].expand(n_sat))
    raw = M.auc(pred, gt)
    rebal = M.auc(pred, gt, pw)
    assert raw == pytest.approx(100 * n_gray / (n_gray + n_sat))
    wg, ws = float(w[q_gray]), float(w[q_sat])
    assert rebal == pytest.approx(100 * wg * n_gray / (wg * n_gray + ws * n_sat))
    assert rebal < raw  # the rare colour weighs more


def test_t_sweep_colorfulness_is_monotone(color):
    """Lower T -> the annealed mean moves from the desaturated mean toward the saturated mode."""
    from chromaflow.evaluate.colorization import T_SWEEP

    g = torch.Generator().manual_seed(0)
    bins = color.ab_bins()
    chroma = bins.norm(dim=1)
    # per pixel: a random saturated mode, mass spread over many (mostly less saturated) bins
    logits = torch.randn(2, 313, 6, 6, generator=g)
    mode = torch.randint(0, 313, (2, 1, 6, 6), generator=g)
    mode = torch.where(chroma[mode] > 60, mode, torch.argmax(chroma).expand_as(mode))
    logits.scatter_(1, mode, 4.0)
    values = []
    for t in T_SWEEP:
        ab = color.decode_ab(logits, method="mode") if t == 0 else color.decode_ab(logits, T=t)
        values.append(M.mean_chroma(ab).mean().item())
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
