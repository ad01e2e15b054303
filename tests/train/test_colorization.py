"""The colorization task: Table 2.1 losses vs independent references, overfitting, l2ft init, the step end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import NearestNeighbors
from torch.utils.data import Dataset

from chromaflow import color
from chromaflow.models import create_model, load_weights, save_weights
from chromaflow.train import train
from chromaflow.train.engine import TrainConfig, fit
from chromaflow.train.losses import classification_loss, regression_loss
from chromaflow.train.tasks.colorization import ColorizationTask


class Synth(Dataset):
    """``n`` fixed smooth colour images (bilinear upsampling of random 4x4 RGB), uint8 (3, size, size)."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=g)
        up = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        self.x = (up * 255).round().to(torch.uint8)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.x[i], "id": str(i), "label": None}


def _ref_soft_target(ab: np.ndarray, pts: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """Dense (P, Q) soft target the way the reference code builds it (sklearn NearestNeighbors + Gaussian)."""
    nn_ = NearestNeighbors(n_neighbors=k, algorithm="ball_tree").fit(pts)
    dist, ind = nn_.kneighbors(ab)
    wts = np.exp(-(dist**2) / (2 * sigma**2))
    wts /= wts.sum(1, keepdims=True)
    z = np.zeros((ab.shape[0], pts.shape[0]))
    np.put_along_axis(z, ind, wts, axis=1)
    return z


@pytest.mark.parametrize("rebalance", [False, True])
def test_classification_loss_matches_dense_reference(rebalance):
    """Eq. 2.2 with v = w[q*] (Eq. 2.3) against a dense numpy computation with sklearn soft-encoding."""
    g = torch.Generator().manual_seed(0)
    ab = torch.rand(2, 2, 5, 6, generator=g, dtype=torch.float64) * 160 - 80
    logits = torch.randn(2, 313, 5, 6, generator=g)
    cw = torch.as_tensor(color.rebalance_weights(color.load_prior()), dtype=torch.float32) if rebalance else None
    idx, w = color.encode_soft(ab.float(), k=5, sigma=5.0)
    ours = float(classification_loss(logits, idx, w, cw))

    pts = color.ab_bins().double().numpy()
    flat_ab = ab.permute(0, 2, 3, 1).reshape(-1, 2).numpy()
    z = _ref_soft_target(flat_ab, pts, 5, 5.0)  # (P, Q)
    logp = torch.log_softmax(logits.double(), 1).permute(0, 2, 3, 1).reshape(-1, 313).numpy()
    v = cw.double().numpy()[z.argmax(1)] if rebalance else np.ones(len(z))  # q* = argmax_q Z
    ref = float(np.mean(-v * (z * logp).sum(1)))
    assert ours == pytest.approx(ref, rel=1e-4)


class FixedOutput(torch.nn.Module):
    """Stands in for eccv16 in the task's own loss code: records its input, returns fixed outputs."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out, self.seen = torch.nn.Parameter(out), None

    def forward(self, l_in: torch.Tensor) -> torch.Tensor:
        self.seen = l_in.detach().clone()
        return self.out


@pytest.mark.parametrize("loss", ["rebalanced", "softce", "l2"])
def test_task_loss_with_its_defaults_is_table_2_1(loss, shared_file):
    """``ColorizationTask(loss=...).loss`` (its own code, its default settings) vs numpy with the thesis's numbers
    as literals: skimage Lab; L fed as (L - 50) / 100; targets at H/4 (4x4 means); soft-encoding 5 nearest bins,
    sigma 5; rebalancing Eq. 2.4 with lambda 1/2 and sigma 5; L2 as 1/2 ||ab / 110 - pred||^2 per pixel."""
    from skimage.color import rgb2lab

    pts = np.load(shared_file("reference_npy/pts_in_hull.npy")).astype(np.float64)
    rgb = Synth(3, 32, seed=5).x
    lab = rgb2lab(rgb.permute(0, 2, 3, 1).numpy())  # (B, H, W, 3)
    small = lab[..., 1:].reshape(3, 8, 4, 8, 4, 2).mean((2, 4)).reshape(-1, 2)  # (B*8*8, 2) at H/4
    g = torch.Generator().manual_seed(0)
    head = torch.randn(3, 2 if loss == "l2" else 313, 8, 8, generator=g) * (0.3 if loss == "l2" else 3.0)
    net = FixedOutput(head)
    got, _ = ColorizationTask(Synth(2), loss=loss).loss(net, {"rgb": rgb})
    np.testing.assert_allclose(net.seen[:, 0].numpy(), (lab[..., 0] - 50) / 100, atol=5e-4)
    flat = head.double().permute(0, 2, 3, 1).reshape(-1, head.shape[1]).numpy()
    if loss == "l2":
        ref = np.mean(0.5 * ((small / 110 - flat) ** 2).sum(1))
    else:
        z = _ref_soft_target(small, pts, 5, 5.0)
        logp = torch.log_softmax(torch.from_numpy(flat), 1).numpy()
        v = np.ones(len(z))
        if loss == "rebalanced":
            p = color.load_prior().numpy()
            gk = np.exp(-((pts[:, None] - pts[None]) ** 2).sum(-1) / (2 * 5.0**2))
            ps = gk @ p / (gk @ p).sum()
            w = 1 / (0.5 * ps + 0.5 / 313)
            v = (w / (ps * w).sum())[z.argmax(1)]
        ref = np.mean(-v * (z * logp).sum(1))
    assert float(got.detach()) == pytest.approx(ref, rel=2e-4)


def test_regression_loss_is_eq_2_1_per_pixel():
    g = torch.Generator().manual_seed(0)
    pred, tgt = torch.randn(2, 2, 3, 4, generator=g), torch.randn(2, 2, 3, 4, generator=g)
    ref = 0.5 * ((pred.numpy() - tgt.numpy()) ** 2).sum(1).mean()
    assert float(regression_loss(pred, tgt)) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="must be"):
        regression_loss(pred[:, :1], tgt[:, :1])


def test_loss_input_rules_and_their_messages():
    logits, idx = torch.zeros(2, 313, 3, 4), torch.zeros(2, 5, 3, 4, dtype=torch.long)
    w = torch.full((2, 5, 3, 4), 0.2)
    msg = (r"^classification_loss: logits \({}\) and soft encoding idx \({}\) / w \({}\) do not match "
           r"\(expected \(B, Q, h, w\) and \(B, k, h, w\)\)$")  # fmt: skip
    for lg, ix, ww in ((logits[0], idx, w), (logits, idx, w[:, :4]), (logits[:1], idx, w), (logits[..., :3], idx, w)):
        shapes = (", ".join(map(str, t.shape)) for t in (lg, ix, ww))
        with pytest.raises(ValueError, match=msg.format(*shapes)):
            classification_loss(lg, ix, ww)
    pred = torch.zeros(2, 2, 3, 4)
    for a, b in ((pred, pred[..., :3]), (pred[0], pred[0]), (pred[:, :1], pred[:, :1])):
        shapes = (", ".join(map(str, t.shape)) for t in (a, b))
        with pytest.raises(
            ValueError, match=r"^regression_loss: pred \({}\) and target \({}\) must be \(B, 2, h, w\)$".format(*shapes)
        ):
            regression_loss(a, b)


def test_targets_are_area_downsampled_lab():
    task = ColorizationTask(Synth(2, 32), loss="softce", width=0.125)
    rgb = Synth(2, 32).x
    l_in, ab = task._targets(rgb)
    from skimage.color import rgb2lab

    ref = rgb2lab(rgb.permute(0, 2, 3, 1).numpy())
    assert np.abs(l_in[:, 0].numpy() * 100 + 50 - ref[..., 0]).max() < 0.05
    _, out, ab_small = task._forward(task.build_model(), rgb)
    assert out.shape == (2, 313, 8, 8) and ab_small.shape == (2, 2, 8, 8)
    blocks = ref[..., 1:].reshape(2, 8, 4, 8, 4, 2).mean((2, 4))  # 4x4 block means
    assert np.abs(ab_small.permute(0, 2, 3, 1).numpy() - blocks).max() < 0.05


def test_overfits_tiny_set(tmp_path):
    """8 images 32x32, width 1/8: the soft-CE loss falls by > 1.6x in 60 steps (slow test: > 3x in 150)."""
    m = fit(ColorizationTask(Synth(), loss="softce", width=0.125),
            TrainConfig(out=str(tmp_path), steps=60, batch_size=8, lr=3e-3, device="cpu"))  # fmt: skip
    assert m["first_loss"] / m["final_loss"] > 1.6, m


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "factor"), [("rebalanced", 3.0), ("softce", 3.0), ("l2", 20.0)])
def test_overfits_tiny_set_150_steps(tmp_path, loss, factor):
    m = fit(ColorizationTask(Synth(), loss=loss, width=0.125),
            TrainConfig(out=str(tmp_path), steps=150, batch_size=8, lr=3e-3, device="cpu"))  # fmt: skip
    assert m["first_loss"] / m["final_loss"] > factor, m


def test_l2ft_starts_from_classification_weights(tmp_path):
    torch.manual_seed(0)
    cls = create_model("eccv16", width=0.125)
    save_weights(cls, tmp_path / "cls.safetensors")
    task = ColorizationTask(Synth(), loss="l2ft", width=0.125, init=str(tmp_path / "cls.safetensors"))
    reg = task.build_model()
    assert reg.config["kwargs"]["head"] == "regression" and reg.head.out_channels == 2
    sc, sr = cls.state_dict(), reg.state_dict()
    assert all(torch.equal(sc[k], sr[k]) for k in sr if not k.startswith("head."))
    with pytest.raises(ValueError, match="--init"):
        ColorizationTask(Synth(), loss="l2ft", width=0.125)
    with pytest.raises(ValueError, match="shape mismatch"):  # a width-1/4 init does not fit a width-1/8 net
        save_weights(create_model("eccv16", width=0.25), tmp_path / "w4.safetensors")
        ColorizationTask(Synth(), loss="l2ft", width=0.125, init=str(tmp_path / "w4.safetensors")).build_model()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sample_dir):
    from chromaflow.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(str(sample_dir), out, max_side=96, val_fraction=0.2, workers=1)
    return out


def test_train_step_end_to_end(prepared, tmp_path):
    """`train()` over prepared shards writes the four outputs; the CLI runs the same and rejects bad input."""
    from chromaflow.cli import main as cli_main

    out = tmp_path / "run"
    m = train("colorization", data=str(prepared), out=str(out), steps=3, batch_size=2, crop=64, width=0.125,
              soft_k=10, device="cpu", log_every=1)  # fmt: skip
    assert {"val_loss", "val_ab_rmse"} <= set(m)  # the prepared sample has a val split
    assert json.loads((out / "metrics.json").read_text())["step"] == 3
    with open(out / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    model = load_weights(out / "model.safetensors", expected_sha256=m["model_sha256"])
    assert model.config["kwargs"] == {"width": 0.125, "head": "class"}
    rc = cli_main(["train", "--task", "colorization", "--data", str(prepared), "--out", str(out), "--steps", "3",
                   "--batch-size", "2", "--crop", "64", "--width", "0.125", "--soft-k", "10", "--device", "cpu"])  # fmt: skip
    assert rc == 0  # same settings: a no-op
    assert cli_main(["train", "--task", "colorization", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    with pytest.raises(TypeError, match="unknown argument"):
        train("colorization", data=str(prepared), out=str(out), batchsize=2)
    with pytest.raises(ValueError, match="no task 'nope'"):
        train("nope", out=str(out))


def test_extra_data_adds_train_splits_and_keeps_val(prepared, sample_dir, tmp_path):
    """--extra-data concatenates other prepared folders' train splits; val and lineage follow --data first."""
    import argparse

    from chromaflow.data import ShardDataset
    from chromaflow.data.prepare import prepare
    from chromaflow.tracking.lineage import data_hash
    from chromaflow.train.tasks import colorization as task

    extra = tmp_path / "extra"
    prepare(str(sample_dir), extra, max_side=80, val_fraction=0.5, workers=1)
    parser = argparse.ArgumentParser()
    task.add_arguments(parser)
    args = parser.parse_args(["--data", str(prepared), "--extra-data", str(extra), "--crop", "64", "--width", "0.125"])
    t = task.build(args)
    n = [len(ShardDataset(d, split="train", crop=64)) for d in (prepared, extra)]
    assert len(t.train_dataset()) == sum(n) and min(n) > 0
    assert len(t.val_set) == len(ShardDataset(prepared, split="val", crop=64, train=False))
    assert t.data_path() == [str(prepared), str(extra)]
    assert t.params()["n_train"] == sum(n)
    assert data_hash(t.data_path()) != data_hash(prepared)
    sizes = {tuple(t.train_dataset()[i]["rgb"].shape) for i in (0, len(t.train_dataset()) - 1)}
    assert sizes == {(3, 64, 64)}  # both folders crop to the same size
    args = parser.parse_args(["--data", str(prepared), "--extra-data", str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="--extra-data: .*missing"):
        task.build(args)
