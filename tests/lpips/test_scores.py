"""2AFC / JND scores against the official package's scorers, SSIM against scikit-image, the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromaflow.evaluate.lpips_eval import (
    l2_distance,
    psnr_distance,
    report_markdown,
    score_2afc,
    score_jnd,
    ssim,
)


class _Loader:
    def __init__(self, batches):
        self.batches = batches

    def load_data(self):
        return iter(self.batches)


def test_score_2afc_matches_thesis_and_official():
    rng = np.random.default_rng(0)
    d0, d1 = rng.random(200), rng.random(200)
    d1[:10] = d0[:10]  # ties count one half
    judge = rng.integers(0, 6, 200) / 5.0  # 5 judgments per triplet, fractional (thesis 6.4.1)
    # thesis: 4 of 5 prefer x0 and the metric picks x0 -> 80% credit
    assert score_2afc([0.1], [0.2], [0.2]) == pytest.approx(0.8)
    assert score_2afc([0.3], [0.3], [0.2]) == pytest.approx(0.5)
    import lpips

    batches = [{"ref": torch.tensor([i]), "p0": torch.tensor([d0[i]]), "p1": torch.tensor([d1[i]]),
                "judge": torch.tensor([judge[i]])} for i in range(200)]  # fmt: skip
    vals = {"p0": iter(d0), "p1": iter(d1)}
    want, _ = lpips.score_2afc_dataset(_Loader(batches), lambda a, b: torch.tensor([b.item()]), name="")
    assert score_2afc(d0, d1, judge) == pytest.approx(want, abs=1e-12)
    del vals


def test_score_jnd_matches_official_and_bounds():
    rng = np.random.default_rng(1)
    ds = rng.random(300)
    same = (rng.random(300) < 0.4 * (1 - ds)).astype(float)
    same[:30] = rng.integers(0, 4, 30) / 3.0  # fractional "same" votes (3 observers)
    import lpips

    batches = [
        {"p0": torch.tensor([ds[i]]), "p1": torch.tensor([0.0]), "same": torch.tensor([same[i]])} for i in range(300)
    ]
    want, _ = lpips.score_jnd_dataset(_Loader(batches), lambda a, b: a, name="")
    assert score_jnd(ds, same) == pytest.approx(want, abs=1e-12)
    assert score_jnd([0.1, 0.2, 0.3], [1, 1, 0]) == pytest.approx(1.0)  # perfect ranking
    assert score_jnd([0.3, 0.2, 0.1], [1, 0, 0]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no pair"):
        score_jnd([0.1, 0.2], [0, 0])


def test_ssim_matches_skimage():
    import skimage.metrics as skm

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 64, 48, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(3, 3, 64, 48, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    for i in range(3):
        want = skm.structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), channel_axis=2,
                                         data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)  # fmt: skip
        assert float(got[i]) == pytest.approx(want, abs=1e-9)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))


def test_l2_psnr_agree_with_skimage():
    import skimage.metrics as skm

    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    want = skm.peak_signal_noise_ratio(x[0].numpy(), y[0].numpy(), data_range=1.0)
    assert float(-psnr_distance(x, y)[0]) == pytest.approx(want, abs=1e-4)
    assert float(l2_distance(x, y)[1]) == pytest.approx(skm.mean_squared_error(x[1].numpy(), y[1].numpy()), rel=1e-5)


def test_report_is_table_shaped_and_flags_proxy():
    res = {"proxy": True, "data": "d", "groups": {"L2": "Low-level", "SSIM": "Low-level", "alex-lin": "LPIPS"},
           "2afc": {n: {"traditional": 0.7, "All": 0.7} for n in ("L2", "SSIM", "alex-lin")},
           "jnd": {n: {"traditional": 0.5, "All": 0.5} for n in ("L2", "SSIM", "alex-lin")}}  # fmt: skip
    md = report_markdown(res)
    assert "PROXY DATA" in md
    assert "| Subtype | Metric | 2AFC traditional | 2AFC All | JND traditional | JND All |" in md
    assert "| Low-level | L2 | 70.0 | 70.0 | 50.0 | 50.0 |" in md and "|  | SSIM |" in md
