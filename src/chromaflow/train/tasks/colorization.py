"""Automatic colorization (thesis ch. 2): L -> ab with the four losses of Table 2.1.

    chromaflow train --task colorization --data runs/demo/prepared --out runs/demo/train \\
        --loss rebalanced --width 0.25 --crop 176 --batch-size 16 --lr 3e-4 --steps 2000

``--loss``: ``rebalanced`` (Ours full: soft-CE with ``v = w[q*]``, ``w = rebalance_weights(prior)``),
``softce`` (Ours class: no rebalancing), ``l2`` (Ours L2, regression head, from scratch),
``l2ft`` (Ours L2 ft: regression head fine-tuned from a classification model, ``--init``).

``--model``: the registered network (default ``eccv16``; ``squeeze_colorizer`` has an ImageNet SqueezeNet
trunk, loaded from ``--trunk PATH`` and trained at ``--trunk-lr-mult`` times ``--lr``); ``--width`` is its
channel multiplier.

Per batch, on the training device: RGB uint8 -> Lab (``color.rgb_to_lab``), the network sees
``(L - l_cent) / l_norm``; the target ab is area-downsampled to the output resolution (H/4) as in
the reference code, then soft-encoded (``--soft-k`` nearest bins, Gaussian sigma 5) for the class losses.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from chromaflow import color
from chromaflow.color.constants import REBALANCE_LAMBDA, SOFT_K_PAPER, SOFT_SIGMA
from chromaflow.color.lab import canonical_device
from chromaflow.models import create_model, load_weights, make_contract, unwrap
from chromaflow.models.weights import load_state_strict
from chromaflow.train.engine import Task
from chromaflow.train.losses import classification_loss, regression_loss

log = logging.getLogger(__name__)

LOSSES = ("rebalanced", "softce", "l2", "l2ft")


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack ``rgb`` uint8 ``(3, H, W)`` items into ``(B, 3, H, W)``; ids and labels stay lists."""
    return {
        "rgb": torch.stack([torch.as_tensor(it["rgb"]) for it in items]),
        "id": [it.get("id") for it in items],
        "label": [it.get("label") for it in items],
    }


class ColorizationTask(Task):
    """The ch. 2 task over any dataset of ``{"rgb": uint8 (3, H, W), ...}`` items.

    Args:
        train_set, val_set: datasets (e.g. ``chromaflow.data.ShardDataset``).
        loss: one of :data:`LOSSES`.
        width: the model's channel multiplier.
        model: registered model name (``eccv16`` or another with the same input and outputs).
        trunk: pretrained trunk weights, loaded with the model's ``load_trunk`` (``squeeze_colorizer``).
        trunk_lr_mult: the trunk's learning rate relative to the engine's ``lr`` (1 = one lr for all).
        prior: ``(Q,)`` empirical ab prior (needed by ``rebalanced``); ``None`` -> ``color.load_prior()``.
        lam: rebalancing mix with the uniform distribution (Eq. 2.4; thesis 1/2).
        soft_k, soft_sigma: soft-encoding neighbours and kernel (thesis: 5 and 5; reference code: 10).
        init: weights to start from (required by ``l2ft``: a classification model; its head is dropped).
        data: the data path (or paths: ``--data`` then each ``--extra-data``), for lineage only.
    """

    name = "colorization"

    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        loss: str = "rebalanced",
        width: float = 0.25,
        prior: np.ndarray | torch.Tensor | None = None,
        lam: float = REBALANCE_LAMBDA,
        soft_k: int = SOFT_K_PAPER,
        soft_sigma: float = SOFT_SIGMA,
        init: str | None = None,
        data: str | list[str] | None = None,
        model: str = "eccv16",
        trunk: str | None = None,
        trunk_lr_mult: float = 1.0,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {loss!r}")
        if loss == "l2ft" and not init:
            raise ValueError("--loss l2ft fine-tunes a classification model: give its weights with --init")
        if init and not Path(init).is_file():
            raise FileNotFoundError(f"--init: {init} does not exist")
        if trunk and not Path(trunk).is_file():
            raise FileNotFoundError(f"--trunk: {trunk} does not exist")
        if not trunk_lr_mult >= 0:
            raise ValueError(f"--trunk-lr-mult must be >= 0, got {trunk_lr_mult}")
        if not 1 <= soft_k <= 313:
            raise ValueError(f"--soft-k must be in [1, 313], got {soft_k}")
        self.train_set, self.val_set = train_set, val_set
        self.loss_kind, self.width, self.lam = loss, width, lam
        self.soft_k, self.soft_sigma, self.init, self.data = soft_k, soft_sigma, init, data
        self.model_name, self.trunk, self.trunk_lr_mult = model, trunk, trunk_lr_mult
        self.head = "regression" if loss in ("l2", "l2ft") else "class"
        self.contract = make_contract()
        self.class_weights: torch.Tensor | None = None  # (Q,) float32 on the CPU; per device: _weights_on
        self._weights_on: dict[torch.device, torch.Tensor] = {}
        if loss == "rebalanced":
            p = color.load_prior() if prior is None else prior
            self.class_weights = torch.as_tensor(
                np.asarray(color.rebalance_weights(torch.as_tensor(np.asarray(p)), lam=lam)), dtype=torch.float32
            )

    # -- engine hooks ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = create_model(self.model_name, width=self.width, head=self.head)
        if self.trunk:
            if not hasattr(model, "load_trunk"):
                raise ValueError(f"--trunk: model {self.model_name!r} has no pretrained trunk to load")
            model.load_trunk(self.trunk)
        if self.init:
            self._load_init(model)
        return model

    def _load_init(self, model: nn.Module) -> None:
        src = load_weights(self.init, contract=self.contract)
        state = src.state_dict()
        if src.config["kwargs"].get("head") != self.head:  # class -> regression: keep the new head
            own = model.state_dict()
            state = {k: (own[k] if k.startswith("head.") else v) for k, v in state.items()}
            log.info(
                "init from %s: all layers but the head (%s -> %s)", self.init, src.config["kwargs"]["head"], self.head
            )
        load_state_strict(model, state, source=str(self.init))

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        """One group at ``lr``, or, for a model with a ``trunk``, the rest at ``lr`` and the trunk at
        ``lr * trunk_lr_mult`` (a pretrained trunk is usually fine-tuned slower than a fresh decoder)."""
        trunk = getattr(unwrap(model), "trunk", None)
        if trunk is None or self.trunk_lr_mult == 1.0:
            return super().param_groups(model, lr)
        ids = {id(p) for p in trunk.parameters()}
        rest = [p for p in model.parameters() if id(p) not in ids]
        return [{"params": rest, "lr": lr}, {"params": list(trunk.parameters()), "lr": lr * self.trunk_lr_mult}]

    def collate(self, items: list[Any]) -> dict[str, Any]:
        return collate(items)

    def _targets(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, 3, H, W)`` -> normalized L ``(B, 1, H, W)`` and ab ``(B, 2, H, W)`` (float32)."""
        with torch.autocast(rgb.device.type, enabled=False):
            lab = color.rgb_to_lab(rgb)
        c = self.contract
        return (lab[:, :1] - c["l_cent"]) / c["l_norm"], lab[:, 1:]

    def prepare(self, device: torch.device) -> None:
        from chromaflow.color import encode, lab

        lab.warm_up(device)
        encode.warm_up(device, (1, self.soft_k))
        self._class_weights_on(device)

    def class_loss(self, out: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The class loss of ``out (B, Q, h, w)`` (float32 logits) against ``ab (B, 2, H, W)``: ``(loss, ab_small)``.

        ab is area-downsampled to ``(h, w)``, soft-encoded and rebalanced: a fixed number of device ops, no
        host sync, whatever the batch size (tested by counting them).
        """
        ab_small = F.interpolate(ab, size=out.shape[-2:], mode="area")  # (B, 2, h, w)
        idx, w = color.encode_soft(ab_small, k=self.soft_k, sigma=self.soft_sigma)
        return classification_loss(out, idx, w, self._class_weights_on(out.device)), ab_small

    def _class_weights_on(self, device: torch.device) -> torch.Tensor | None:
        """The ``(Q,)`` rebalancing weights on ``device``, copied there once per device (not per step)."""
        if self.class_weights is None:
            return None
        device = canonical_device(device)  # prepare() gets "cuda", the step's tensors say "cuda:0"
        if device not in self._weights_on:
            self._weights_on[device] = self.class_weights.to(device)
        return self._weights_on[device]

    def _forward(self, model: nn.Module, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        l_in, ab = self._targets(rgb)
        out = model(l_in)  # (B, Q|2, H/4, W/4), maybe bf16
        with torch.autocast(rgb.device.type, enabled=False):
            out = out.float()
            if self.head == "class":
                loss, ab_small = self.class_loss(out, ab)
            else:
                ab_small = F.interpolate(ab, size=out.shape[-2:], mode="area")  # (B, 2, H/4, W/4)
                loss = regression_loss(out, ab_small / self.contract["ab_norm"])
        return loss, out, ab_small

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, _, _ = self._forward(model, batch["rgb"])
        return loss, {}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        """Mean val loss and the RMS ab error (ab units) of the point estimate at H/4 (annealed mean)."""
        T = unwrap(model).config["contract"]["T"]
        tot_loss, tot_sq, n_batches, n_px = 0.0, 0.0, 0, 0
        for batch in loader:
            rgb = batch["rgb"].to(device)
            loss, out, ab_small = self._forward(model, rgb)
            with torch.autocast(device.type, enabled=False):
                pred = color.decode_ab(out, T=T) if self.head == "class" else out * self.contract["ab_norm"]
                tot_sq += float((pred - ab_small).pow(2).sum(1).sum())
            tot_loss, n_batches, n_px = tot_loss + float(loss), n_batches + 1, n_px + ab_small[:, 0].numel()
        return {"val_loss": tot_loss / max(n_batches, 1), "val_ab_rmse": (tot_sq / max(n_px, 1)) ** 0.5}

    def params(self) -> dict[str, Any]:
        return {
            "loss": self.loss_kind,
            "width": self.width,
            "head": self.head,
            "lam": self.lam,
            "soft_k": self.soft_k,
            "soft_sigma": self.soft_sigma,
            "init": self.init,
            "data": self.data,
            "n_train": len(self.train_set),
            "prior_sha": None if self.class_weights is None else _digest(self.class_weights),
            # only when not the defaults, so the fingerprints of existing eccv16 runs do not change
            **({"model": self.model_name} if self.model_name != "eccv16" else {}),
            **({"trunk": self.trunk} if self.trunk else {}),
            **({"trunk_lr_mult": self.trunk_lr_mult} if self.trunk_lr_mult != 1.0 else {}),
        }

    def data_path(self) -> str | list[str] | None:
        return self.data


def _digest(t: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


# -- step plumbing ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's own flags (the engine's --out/--steps/--batch-size/--lr/--seed/--resume are added by train/cli)."""
    add_data_arguments(parser)
    parser.add_argument("--loss", choices=LOSSES, default="rebalanced", help="Table 2.1 row (default: rebalanced)")
    parser.add_argument(
        "--model", default="eccv16", help="registered colorization network (eccv16 | squeeze_colorizer)"
    )
    parser.add_argument("--width", type=float, default=0.25, help="the model's channel multiplier (eccv16: 1 = thesis)")
    parser.add_argument(
        "--trunk", help="pretrained trunk weights (squeeze_colorizer: the torchvision SqueezeNet 1.1 .pth)"
    )
    parser.add_argument("--trunk-lr-mult", type=float, default=1.0, help="the trunk's lr as a multiple of --lr")
    parser.add_argument("--crop", type=int, default=176, help="training crop size in pixels (thesis: 176)")
    parser.add_argument("--prior", help="empirical ab prior: prior.npy or a `chromaflow stats` folder "
                        "(default: the shipped ImageNet prior)")  # fmt: skip
    parser.add_argument("--lam", type=float, default=REBALANCE_LAMBDA, help="rebalancing lambda (Eq. 2.4)")
    parser.add_argument("--soft-k", type=int, default=SOFT_K_PAPER, help="soft-encoding neighbours (paper 5, code 10)")
    parser.add_argument("--init", help="weights to start from (required by --loss l2ft)")


def _load_prior(path: str | None) -> np.ndarray:
    if path is None:
        return np.asarray(color.load_prior())
    p = Path(path)
    if p.is_dir():
        p = p / "prior.npy"
    if not p.is_file():
        raise FileNotFoundError(f"--prior: {p} does not exist")
    return np.asarray(color.load_prior(str(p)))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--extra-data``: the prepared folders of the colorization-style tasks."""
    parser.add_argument("--data", help="prepared data folder (output of `chromaflow prepare`)")
    parser.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                        help="another prepared folder whose train split is added to training "
                        "(repeatable; validation stays on --data's val split)")  # fmt: skip


def data_inputs(args: argparse.Namespace) -> str | list[str]:
    """What a run reads, for lineage: ``--data``, or ``[--data, *--extra-data]`` when extras are given."""
    return [str(args.data), *map(str, args.extra_data)] if args.extra_data else str(args.data)


def datasets(data: str | None, crop: int, extra: Sequence[str] = ()) -> tuple[Dataset, Dataset | None]:
    """Train and (when present) val ``ShardDataset`` of a prepared folder, cropped to ``crop``.

    ``extra``: more prepared folders whose train splits are concatenated after ``data``'s; the val split
    is ``data``'s only, so validation numbers stay comparable when training data is added.
    """
    from chromaflow.data import ShardDataset
    from chromaflow.data.dataset import is_url

    if not data:
        raise ValueError("--data is required (a folder written by `chromaflow prepare`)")
    for flag, folder in [("--data", data), *(("--extra-data", x) for x in extra)]:
        if not is_url(folder) and not Path(folder).is_dir():  # URLs (s3://, http://): ShardDataset checks
            raise FileNotFoundError(f"{flag}: {folder} is not a folder")
    train_set: Dataset = ShardDataset(data, split="train", crop=crop, train=True)
    if extra:
        train_set = ConcatDataset([train_set, *(ShardDataset(x, split="train", crop=crop, train=True) for x in extra)])
    try:
        val_set = ShardDataset(data, split="val", crop=crop, train=False)
        val_set = val_set if len(val_set) else None
    except (FileNotFoundError, ValueError) as e:
        log.info("no validation split in %s (%s): validation skipped", data, e)
        val_set = None
    return train_set, val_set


def build(args: argparse.Namespace) -> ColorizationTask:
    """``ColorizationTask`` over ``ShardDataset(args.data)`` (train split; val split when present)."""
    train_set, val_set = datasets(args.data, args.crop, args.extra_data)
    prior = _load_prior(args.prior) if args.loss == "rebalanced" else None
    return ColorizationTask(
        train_set,
        val_set,
        loss=args.loss,
        width=args.width,
        prior=prior,
        lam=args.lam,
        soft_k=args.soft_k,
        init=args.init,
        data=data_inputs(args),
        model=args.model,
        trunk=args.trunk,
        trunk_lr_mult=args.trunk_lr_mult,
    )
