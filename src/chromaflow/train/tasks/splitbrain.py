"""Split-brain autoencoders and their ablations (thesis ch. 5, Table 5.4): ``--task splitbrain --variant V``.

    chromaflow train --task splitbrain --variant split_cl_cl --data runs/tiny --out runs/sb/split_cl_cl \\
        --input-size 64 --width 0.25 --fc-width 256 --classes 20 --batch-size 32 --steps 150 --lr 1e-3

Per batch, on the training device: RGB uint8 ``(B, 3, S, S)`` -> Lab (``color.rgb_to_lab``) -> the
network input ``normalize_lab`` (L and ab scaled to about [-0.5, 0.5] / [-1, 1]). Each tower's target is
the Lab subset it predicts, area-downsampled to the prediction grid (S/8, as the thesis predicts 12x12
from 180 px):

- ``ab`` cl: 313-way cross-entropy on the nearest in-gamut bin (one-hot ``color.encode_hard``, no
  rebalancing: thesis 5.4 "Quantization procedure"); ``ab`` reg: ``1/2 ||ab/ab_norm - pred||^2``;
- ``L`` cl: 50-way cross-entropy, bins of size 2 over [0, 100]; ``L`` reg: ``1/2 ((L-l_cent)/l_norm - pred)^2``;
- ``Lab`` reg (autoencoders): ``1/2 ||normalized Lab - pred||^2``; ``labels``: cross-entropy on the class
  index (labels mapped through the sorted label set of the train split).

Losses are means over pixels (Eq. 5.1/5.2 sum them; a constant factor) and the towers' losses are summed
(Eq. 5.3: the towers are disjoint, so each is trained by its own loss only). ``gaussian`` is never
trained: the transfer step builds it with ``random:splitbrain:variant=gaussian,...``.
``--classes N`` keeps the first N labels (sorted) of the train split, for CPU-sized runs; the val split is
restricted to the same labels.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from chromaflow import color
from chromaflow.color.constants import AB_NORM
from chromaflow.models import create_model
from chromaflow.train.engine import Task

log = logging.getLogger(__name__)
sb = importlib.import_module("chromaflow.models.splitbrain")  # the module (the package may export a same-named factory)

TRAINABLE = tuple(v for v in sb.VARIANTS if v != "gaussian")


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack ``rgb`` uint8 ``(3, S, S)`` into ``(B, 3, S, S)``; labels and ids stay lists."""
    return {
        "rgb": torch.stack([torch.as_tensor(it["rgb"]) for it in items]),
        "label": [it.get("label") for it in items],
        "id": [it.get("id") for it in items],
    }


def l_bins(lum: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] ``(B, 1, h, w)`` -> bin index ``(B, h, w)`` in [0, 49] (bins of size 2)."""
    return (lum[:, 0] / sb.L_BIN_SIZE).floor().clamp(0, sb.L_BINS - 1).long()


def tower_loss(spec: sb.TowerSpec, pred: torch.Tensor, lab: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Loss of one tower. ``pred (B, C, h, w)`` (``labels``: ``(B, K)``), ``lab (B, 3, H, W)`` raw Lab
    (L in [0, 100], ab in about [-110, 110]); ``labels (B,)`` long class indices for the ``labels`` target."""
    pred = pred.float()
    if spec.target == "labels":
        if labels is None:
            raise ValueError("splitbrain: variant 'labels' needs labelled data (a label per image)")
        return F.cross_entropy(pred, labels)
    small = F.interpolate(lab, size=pred.shape[-2:], mode="area")  # (B, 3, h, w)
    if spec.target == "ab":
        ab = small[:, 1:]
        if spec.loss == "cl":
            return F.cross_entropy(pred, color.encode_hard(ab))
        return 0.5 * (pred - ab / AB_NORM).pow(2).sum(1).mean()
    if spec.target == "L":
        if spec.loss == "cl":
            return F.cross_entropy(pred, l_bins(small[:, :1]))
        return 0.5 * (pred - sb.normalize_lab(small)[:, :1]).pow(2).sum(1).mean()
    return 0.5 * (pred - sb.normalize_lab(small)).pow(2).sum(1).mean()  # Lab -> Lab


class SplitBrainTask(Task):
    """Pre-train a :class:`chromaflow.models.splitbrain.SplitBrain` variant on ``{"rgb", "label"}`` items.

    Args:
        train_set, val_set: datasets of uint8 ``(3, S, S)`` RGB items (``S == input_size``).
        variant: one of :data:`TRAINABLE`.
        classes: the label names, index = position (needed by ``labels``; else only logged).
        input_size, width, fc_width: model knobs (see the model module).
        data: the data path, for lineage.
    """

    name = "splitbrain"

    def __init__(
        self, train_set: Dataset, val_set: Dataset | None = None, *, variant: str = "split_cl_cl",
        classes: Sequence[str] = (), input_size: int = 64, width: float = 0.5, fc_width: int = 512,
        data: str | None = None,
    ) -> None:  # fmt: skip
        if variant not in TRAINABLE:
            hint = " ('gaussian' is never trained: evaluate it as random:splitbrain:variant=gaussian)"
            raise ValueError(f"--variant must be one of {TRAINABLE}, got {variant!r}" + hint * (variant == "gaussian"))
        if variant == "labels" and len(classes) < 2:
            raise ValueError(
                f"--variant labels needs at least 2 labelled classes in the train split, got {len(classes)}"
            )
        self.train_set, self.val_set, self.variant = train_set, val_set, variant
        self.classes = list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.input_size, self.width, self.fc_width, self.data = input_size, width, fc_width, data
        self.specs = sb.VARIANTS[variant]

    def build_model(self) -> nn.Module:
        return create_model(
            "splitbrain", variant=self.variant, input_size=self.input_size, width=self.width,
            fc_width=self.fc_width, num_classes=len(self.classes) if self.variant == "labels" else None,
        )  # fmt: skip

    def collate(self, items: list[Any]) -> dict[str, Any]:
        return collate(items)

    def _labels(self, names: Sequence[str | None], device: torch.device) -> torch.Tensor | None:
        if self.variant != "labels":
            return None
        bad = sorted({str(n) for n in names if n not in self.index})
        if bad:
            raise ValueError(f"splitbrain: labels {bad[:5]} are not in the train split's label set")
        return torch.tensor([self.index[n] for n in names], device=device)

    def _losses(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        rgb = batch["rgb"]
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"splitbrain: expected rgb batches of shape (B, 3, S, S), got {tuple(rgb.shape)}")
        with torch.autocast(rgb.device.type, enabled=False):
            lab = color.rgb_to_lab(rgb)
        labels = self._labels(batch["label"], rgb.device)
        outs = model(sb.normalize_lab(lab))
        with torch.autocast(rgb.device.type, enabled=False):
            losses = [tower_loss(s, o, lab, labels) for s, o in zip(self.specs, outs, strict=True)]
        return losses, (outs[0] if self.variant == "labels" else None)

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        losses, _ = self._losses(model, batch)
        logs = {
            f"loss_{s.source}_{s.target}_{s.loss}_{i}": float(v.detach())
            for i, (s, v) in enumerate(zip(self.specs, losses, strict=True))
        }
        return torch.stack(losses).sum(), logs

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        """Mean val loss (summed over towers) and, for ``labels``, top-1 accuracy."""
        tot, n, correct, seen = 0.0, 0, 0, 0
        for batch in loader:
            batch = {**batch, "rgb": batch["rgb"].to(device)}
            losses, logits = self._losses(model, batch)
            tot, n = tot + float(sum(losses)), n + 1
            if logits is not None:
                target = self._labels(batch["label"], device)
                correct += int((logits.argmax(1) == target).sum())
                seen += len(target)
        out = {"val_loss": tot / max(n, 1)}
        if seen:
            out["val_top1"] = correct / seen
        return out

    def params(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "input_size": self.input_size,
            "width": self.width,
            "fc_width": self.fc_width,
            "n_classes": len(self.classes),
            "n_train": len(self.train_set),
            "data": self.data,
        }

    def data_path(self) -> str | None:
        return self.data


def restrict(ds: Any, keep: set[str]) -> Dataset:
    """``ds`` (a ``ShardDataset``: has ``label_of``) limited to items whose label is in ``keep``."""
    idx = [i for i, lab in enumerate(ds.label_of) if lab in keep]
    return Subset(ds, idx)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's own flags (engine flags come from train/cli)."""
    parser.add_argument("--data", help="prepared data folder (output of `chromaflow prepare`)")
    parser.add_argument("--variant", choices=TRAINABLE, default="split_cl_cl", help="Table 5.4 row to train")
    parser.add_argument("--input-size", type=int, default=64, help="image side in px (64 Tiny-ImageNet, 32 CIFAR)")
    parser.add_argument("--width", type=float, default=0.5, help="conv channel multiplier (1 = AlexNet)")
    parser.add_argument("--fc-width", type=int, default=512, help="fc6/fc7 channels (thesis 4096)")
    parser.add_argument("--classes", type=int, default=None, help="keep the first N labels (sorted) only")
    parser.add_argument("--val", action=argparse.BooleanOptionalAction, default=True, help="validate on the val split")


def build(args: argparse.Namespace) -> SplitBrainTask:
    """``SplitBrainTask`` over ``ShardDataset(args.data)`` (train split; val split when present)."""
    from chromaflow.data import ShardDataset

    if not args.data:
        raise ValueError("--data is required (a folder written by `chromaflow prepare`)")
    if not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data: {args.data} is not a folder")
    if args.classes is not None and args.classes < 1:
        raise ValueError(f"--classes must be >= 1, got {args.classes}")
    size = args.input_size
    train = ShardDataset(args.data, split="train", crop=size, train=True)
    classes = train.labels[: args.classes] if args.classes else train.labels
    keep = set(classes)
    train_set = restrict(train, keep) if args.classes else train
    val_set = None
    try:
        if not getattr(args, "val", True):
            raise ValueError("--no-val")
        val = ShardDataset(args.data, split="val", crop=size, train=False)
        val_set = restrict(val, keep) if args.classes else val
        val_set = val_set if len(val_set) else None
    except (FileNotFoundError, ValueError) as e:
        log.info("no validation split in %s (%s): validation skipped", args.data, e)
    log.info("splitbrain %s: %d train images, %d classes", args.variant, len(train_set), len(classes))
    return SplitBrainTask(
        train_set, val_set, variant=args.variant, classes=classes, input_size=size, width=args.width,
        fc_width=args.fc_width, data=str(args.data),
    )  # fmt: skip
