"""A task that owns several optimizers (Task.optimizers + train_step): stepped in its order, checkpointed by
name, resumed bit-exactly; settings the engine cannot honour for it are refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy import ToyData

from chromaflow.models import registry
from chromaflow.train.engine import Task, TrainConfig, fit, load_checkpoint

try:

    @registry.register_model
    def toy_two_nets(hidden: int = 8) -> nn.Module:
        return nn.ModuleDict({"f": nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2)),
                              "critic": nn.Linear(2, 1)})  # fmt: skip
except ValueError:  # registered by an earlier import of this module
    pass


class TwoOptimizerTask(Task):
    """``f`` regresses y; a ``critic`` scores f's output (an adversary-shaped second step with its own optimizer)."""

    name = "toy_two"

    def build_model(self) -> nn.Module:
        return registry.create_model("toy_two_nets")

    def train_dataset(self):
        return ToyData(32, noise=True)

    def optimizers(self, model, cfg):
        return {
            "f": torch.optim.Adam(model["f"].parameters(), lr=cfg.lr),
            "critic": torch.optim.SGD(model["critic"].parameters(), lr=cfg.lr, momentum=0.9),
        }

    def train_step(self, model, batch, optimizers):
        pred = model["f"](batch["x"])
        loss = (pred - batch["y"]).pow(2).mean()
        optimizers["f"].zero_grad()
        loss.backward()
        optimizers["f"].step()
        optimizers["critic"].zero_grad()
        critic = (model["critic"](pred.detach()) - 1).pow(2).mean()
        critic.backward()
        optimizers["critic"].step()
        return loss, {"critic": float(critic.detach())}


def cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(out=str(tmp_path), steps=30, batch_size=8, lr=1e-2, schedule="cosine", **kw)


def test_own_optimizers_learn_and_are_checkpointed_by_name(tmp_path):
    m = fit(TwoOptimizerTask(), cfg(tmp_path / "a"))
    assert m["final_loss"] < m["first_loss"]
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert set(ckpt["optimizer"]) == set(ckpt["scheduler"]) == {"f", "critic"}
    assert ckpt["optimizer"]["critic"]["state"]  # the critic's optimizer stepped (momentum buffers)
    assert ckpt["scheduler"]["critic"]["last_epoch"] == 30  # one schedule per optimizer, stepped each step
    rows = (tmp_path / "a" / "history.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "loss", "lr", "critic"] and len(rows) == 31


def test_resume_matches_uninterrupted(tmp_path):
    full = fit(TwoOptimizerTask(), cfg(tmp_path / "full"))
    fit(TwoOptimizerTask(), cfg(tmp_path / "cut", stop_at=13))
    resumed = fit(TwoOptimizerTask(), cfg(tmp_path / "cut", resume="auto"))
    assert resumed["model_sha256"] == full["model_sha256"]
    a = (tmp_path / "full" / "history.csv").read_bytes()
    assert (tmp_path / "cut" / "history.csv").read_bytes() == a


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"grad_accum": 2, "batch_size": 8}, "grad_accum 2"),
        ({"compile": True}, "compile"),
        ({"clip_grad": 1.0}, "clip_grad"),
    ],
)
def test_unsupported_settings_are_named(tmp_path, setting, message):
    kw = {"steps": 2, "batch_size": 8, "lr": 1e-2, **setting}
    with pytest.raises(ValueError, match=f"a task with its own optimizers does not support {message}"):
        fit(TwoOptimizerTask(), TrainConfig(out=str(tmp_path), **kw))
