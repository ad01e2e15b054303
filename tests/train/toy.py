"""A tiny regression task for engine tests: fast, with optional randomness in data and model.

``noise=True`` adds augmentation noise drawn from the global torch RNG (in the dataset) and dropout
(in the model), so a resumed run matches an uninterrupted one only if RNG states are restored.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from chromaflow.models import registry
from chromaflow.train.engine import Task

if "toy_mlp" not in registry._MODELS:

    @registry.register_model
    def toy_mlp(hidden: int = 16, dropout: float = 0.0) -> nn.Module:
        return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 2))


class ToyData(Dataset):
    def __init__(self, n: int = 32, noise: bool = False) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.randn(4, 2, generator=g) + 0.1 * torch.randn(n, 2, generator=g)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.x[i] + (0.05 * torch.randn(4) if self.noise else 0)
        return {"x": x, "y": self.y[i]}


class ToyTask(Task):
    name = "toy"

    def __init__(self, n: int = 32, noise: bool = False) -> None:
        self.n, self.noise = n, noise

    def build_model(self) -> nn.Module:
        return registry.create_model("toy_mlp", dropout=0.2 if self.noise else 0.0)

    def train_dataset(self) -> Dataset:
        return ToyData(self.n, self.noise)

    def val_dataset(self) -> Dataset:
        return ToyData(8)

    def loss(self, model, batch):
        err = model(batch["x"]) - batch["y"]
        return err.pow(2).mean(), {"abs_err": float(err.detach().abs().mean())}

    def params(self) -> dict:
        return {"n": self.n, "noise": self.noise}


if "toy_conv" not in registry._MODELS:

    @registry.register_model
    def toy_conv(hidden: int = 8) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.Tanh(), nn.Conv2d(hidden, 2, 1))


class ToyShardTask(Task):
    """Predict G and B from R on the centre crops of prepared Parquet shards (no BatchNorm, no randomness).

    ``data``: a prepare output folder or fsspec URL; the engine shards it by lanes (``TrainConfig.lanes``).
    """

    name = "toy_shards"

    def __init__(self, data: str, crop: int = 16) -> None:
        self.data, self.crop = data, crop

    def build_model(self) -> nn.Module:
        return registry.create_model("toy_conv")

    def train_dataset(self) -> Dataset:
        from chromaflow.data import ShardDataset

        return ShardDataset(self.data, split="train", crop=self.crop, train=False)

    def collate(self, items):
        from chromaflow.data import collate

        return collate(items)

    def loss(self, model, batch):
        x = batch["rgb"].float() / 255
        err = model(x[:, :1]) - x[:, 1:]
        return err.pow(2).mean(), {}
