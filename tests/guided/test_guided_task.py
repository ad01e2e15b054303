"""The user-guided training task: losses of Eq. 3.4-3.6 on simulated hints, overfitting, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from chromaflow.models import load_weights
from chromaflow.models.siggraph17 import guided_ab
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


def test_huber_term_is_eq_3_4_in_ab_units():
    """With delta = 1 ab unit, an error of 0.5 ab costs 0.125 and an error of 3 ab costs 2.5 (Eq. 3.4)."""
    task = GuidedTask(Synth(2))
    ab = torch.zeros(1, 2, 8, 8)
    c = task.contract
    for err, want in ((0.5, 0.5 * 0.5**2), (3.0, 3.0 - 0.5)):
        pred = torch.full_like(ab, err) / c["ab_norm"]
        got = F.smooth_l1_loss(pred, ab / c["ab_norm"], beta=1.0 / c["ab_norm"], reduction="none") * c["ab_norm"]
        torch.testing.assert_close(got.mean(), torch.tensor(want))


def test_overfits_and_follows_hints(tmp_path):
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
