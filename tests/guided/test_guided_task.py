"""The user-guided training task: losses of Eq. 3.4-3.6 on simulated hints, overfitting, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from chromaflow.models import load_weights
from chromaflow.models.siggraph17 import GuidedOutput, guided_ab
from chromaflow.train.engine import TrainConfig, fit
from chromaflow.train.tasks.guided import GuidedTask


class Synth(Dataset):
    """``n`` smooth colour images (bilinear upsampling of random 4x4 RGB), uint8 (3, size, size)."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=g)
        self.x = (
            (F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
        )

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.x[i], "id": str(i), "label": None}


# the thesis's numbers, written here as literals (not imported from the code under test)
AB_NORM, MASK_CENT = 110.0, 0.5  # ch. 3: hint ab fed as ab / 110, the mask as mask - 0.5
HUBER_DELTA = 1.0  # Eq. 3.4: smooth-l1 with delta = 1 ab unit
SOFT_K, SOFT_SIGMA = 10, 5.0  # ch. 3.3.2: distribution head's soft target, 10 nearest bins, sigma 5


class Spy(nn.Module):
    """A stand-in network for the task's own loss code: records its inputs, returns fixed outputs."""

    def __init__(self, b: int, h: int, w: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ab = nn.Parameter(torch.rand(b, 2, h, w, generator=g) * 1.2 - 0.6)  # [-66, 66] ab units
        self.logits = nn.Parameter(torch.randn(b, 313, h // 4, w // 4, generator=g) * 30)  # far from uniform
        self.inputs: tuple = ()

    def forward(self, l, hint, mask, g=None):
        self.inputs = (l, hint, mask, g)
        return GuidedOutput(self.ab, self.logits)


def _skimage_ab(rgb: torch.Tensor) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb.permute(0, 2, 3, 1).numpy()).transpose(0, 3, 1, 2)[:, 1:]  # (B, 2, H, W)


def _dense_soft_target(ab: np.ndarray, bins: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """``(P, 2)`` ab -> ``(P, Q)``: Gaussian weights on the k nearest bins by a full sort (brute force)."""
    d = np.sqrt(((ab[:, None, :] - bins[None]) ** 2).sum(-1))
    near = np.argsort(d, 1, kind="stable")[:, :k]
    wts = np.exp(-(np.take_along_axis(d, near, 1) ** 2) / (2 * sigma**2))
    z = np.zeros_like(d)
    np.put_along_axis(z, near, wts / wts.sum(1, keepdims=True), 1)
    return z


def test_task_loss_is_eq_3_4_to_3_6_with_the_thesis_numbers(shared_file):
    """``GuidedTask.loss`` (its own code) vs an independent numpy computation: Huber with delta = 1 ab unit over
    skimage Lab, and the side head's soft-encoded cross-entropy with k = 10, sigma = 5 at H/4; and the hints it
    feeds the network are ``hint / 110`` and ``mask - 0.5`` of the simulated points."""
    from chromaflow.data.hints import simulate_local_hints

    bins = np.load(shared_file("reference_npy/pts_in_hull.npy")).astype(np.float64)
    rgb = Synth(4, 32, seed=3).x
    task = GuidedTask(Synth(2), width=1 / 16, dist_weight=0.7)
    spy = Spy(4, 32, 32)
    task.generator = torch.Generator().manual_seed(7)
    total, parts = task.loss(spy, {"rgb": rgb})

    ab = _skimage_ab(rgb)
    # the inputs: the same simulated points (same seed), scaled the thesis's way
    hint, mask = simulate_local_hints(torch.from_numpy(ab).float(), generator=torch.Generator().manual_seed(7))
    assert 0 < int(mask.sum()) < mask.numel(), "the seed must reveal some but not all pixels"
    l_in, hint_in, mask_in, g = spy.inputs
    assert g is None
    torch.testing.assert_close(mask_in, mask - MASK_CENT, atol=0, rtol=0)
    torch.testing.assert_close(hint_in, hint / AB_NORM, atol=2e-4, rtol=0)
    assert float(hint_in.abs().max()) > 0.05  # revealed colours are really there

    err = np.abs(spy.ab.detach().double().numpy() * AB_NORM - ab)
    huber = np.where(err < HUBER_DELTA, 0.5 * err**2, HUBER_DELTA * (err - 0.5 * HUBER_DELTA)).sum(1).mean()
    assert parts["huber"] == pytest.approx(huber, rel=1e-4)

    small = ab.reshape(4, 2, 8, 4, 8, 4).mean((3, 5))  # area downsampling to H/4 = 4x4 block means
    z = _dense_soft_target(small.transpose(0, 2, 3, 1).reshape(-1, 2), bins, SOFT_K, SOFT_SIGMA)
    logp = torch.log_softmax(spy.logits.detach().double(), 1).permute(0, 2, 3, 1).reshape(-1, 313).numpy()
    dist = float(-(z * logp).sum(1).mean())
    # tight: the 10th neighbour carries ~0.3% of the mass, so k = 9 moves this loss by ~1e-4 (relative)
    assert parts["dist_ce"] == pytest.approx(dist, rel=2e-6)
    assert (task.soft_k, task.soft_sigma) == (SOFT_K, SOFT_SIGMA)
    assert float(total.detach()) == pytest.approx(huber + 0.7 * dist, rel=1e-4)


def test_the_network_sees_the_hints_during_training():
    """The real siggraph17 inside the task's forward gets the revealed points: mask - 0.5 and hint ab / 110."""
    task = GuidedTask(Synth(2), width=1 / 16)
    model = task.build_model()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append([a.clone() for a in args[:3]]))
    task.generator = torch.Generator().manual_seed(7)
    task.loss(model, {"rgb": Synth(4, 32, seed=3).x})
    ((l_in, hint_in, mask_in),) = seen
    assert set(mask_in.unique().tolist()) == {-0.5, 0.5}
    revealed = mask_in > 0
    assert bool((hint_in.masked_select(~revealed.expand_as(hint_in)) == 0).all())
    assert 0.02 < float(hint_in.abs().amax()) <= 1.0


def test_overfits_a_tiny_set(tmp_path):
    """80 steps on 8 images: the loss falls and the colours beat an untrained network's (without hints; whether
    hints move the colour is checked on the shipped model, tests/web/test_guided_core.py)."""
    torch.manual_seed(0)
    task = GuidedTask(Synth(8), width=1 / 8, dist_weight=0.5)
    result = fit(task, TrainConfig(out=str(tmp_path), steps=80, batch_size=8, lr=2e-3, log_every=20))
    hist = (tmp_path / "history.csv").read_text().splitlines()
    losses = [float(r.split(",")[1]) for r in hist[1:]]
    assert losses[-1] < losses[0] / 1.5, losses
    model = load_weights(tmp_path / "model.safetensors").eval()
    assert model.config["name"] == "siggraph17"
    # the trained network's colours are closer to the ground truth than an untrained one's (no hints)
    from chromaflow.color import rgb_to_lab

    lab = rgb_to_lab(Synth(8).x)
    l, ab = lab[:, :1], lab[:, 1:]
    torch.manual_seed(0)
    fresh = task.build_model().eval()
    with torch.no_grad():
        trained_err = (guided_ab(model, l, torch.zeros_like(ab), torch.zeros_like(l)).ab - ab).abs().mean()
        fresh_err = (guided_ab(fresh, l, torch.zeros_like(ab), torch.zeros_like(l)).ab - ab).abs().mean()
    assert trained_err < 0.8 * fresh_err
    assert json.loads((tmp_path / "metrics.json").read_text())
    assert result


def test_crop_must_be_multiple_of_8():
    task = GuidedTask(Synth(2, size=30), width=1 / 16)
    model = task.build_model()
    with pytest.raises(ValueError, match="multiple of 8"):
        task.loss(model, {"rgb": Synth(2, size=30).x})


def test_init_continues_from_a_guided_model_strictly(tmp_path):
    """``--init`` loads every tensor of a same-width siggraph17; a different width is refused."""
    from chromaflow.models import create_model, save_weights

    torch.manual_seed(0)
    src = create_model("siggraph17", width=0.125, global_hints=False)
    save_weights(src, tmp_path / "g.safetensors")
    got = GuidedTask(Synth(2), width=0.125, init=str(tmp_path / "g.safetensors")).build_model().state_dict()
    want = src.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    save_weights(create_model("siggraph17", width=0.25, global_hints=False), tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="shape mismatch"):
        GuidedTask(Synth(2), width=0.125, init=str(tmp_path / "wide.safetensors")).build_model()
