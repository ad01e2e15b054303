"""``chromaflow train --task lpips``: LPIPS lin / tune / scratch on 2AFC judgments (thesis sec. 6.3, Eq. 6.2).

The model is the registered ``lpips_2afc`` (:mod:`chromaflow.models.lpips`: an LPIPS distance plus the small
ranking network ``G``), trained with binary cross-entropy against the judgment ``h`` (fraction preferring
p1). Variants:

- ``lin``: pretrained trunk frozen; learn ``w`` (and G);
- ``tune``: pretrained trunk fine-tuned together with ``w``;
- ``scratch``: trunk from torchvision's seeded random init, everything trained.

``w`` starts from the released code's init (1x1-conv default, Kaiming-uniform) projected onto ``w >= 0`` and
is projected again before every forward pass, i.e. after every optimizer step (the engine has no
post-step hook; the last step's projection happens when the weights are loaded,
:func:`chromaflow.models.lpips.load_distance`).
Dropout 0.5 on the squared differences while training (released code). Defaults for this task follow
the thesis: Adam lr 1e-4, beta1 0.5, batch 50, no weight decay; the thesis's "5 epochs + 5 epochs linear
decay" has no engine schedule (use ``--schedule constant`` or ``cosine``).

    chromaflow train --task lpips --variant lin --net squeeze --data runs/bapps_proxy \\
        --trunk ../shared/datasets/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth \\
        --out runs/lpips_squeeze_lin --steps 400

The data comes from ``chromaflow bapps`` (a PROXY BAPPS built from photos) or the real BAPPS, unchanged.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from chromaflow.data.bapps import TwoAFCDataset, list_sets, score_2afc
from chromaflow.models import create_model, unwrap
from chromaflow.models import lpips as lp
from chromaflow.train.engine import Task

log = logging.getLogger(__name__)

VARIANTS = ("lin", "tune", "scratch")


def _collate(items: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in ("ref", "p0", "p1", "judge")}


class LpipsTask(Task):
    """2AFC training of LPIPS (see the module docstring)."""

    name = "lpips"

    def __init__(
        self,
        data: str | os.PathLike,
        *,
        variant: str = "lin",
        net: str = "alex",
        trunk: str | None = None,
        version: str = "0.1",
        dropout: float = 0.5,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"--variant: expected one of {VARIANTS}, got {variant!r}")
        if net not in lp.NETS:
            raise ValueError(f"--net: unknown backbone {net!r}; choose one of {sorted(lp.NETS)}")
        if variant != "scratch" and trunk is None:
            raise ValueError(f"--variant {variant} needs --trunk (pretrained torchvision weights; or 'random')")
        if variant != "scratch" and trunk == "random":
            log.warning("--variant %s with a RANDOM trunk: this is not the thesis's pretrained setting", variant)
        self.data, self.variant, self.net, self.trunk = Path(data), variant, net, trunk
        self.version, self.dropout, self.seed = version, dropout, seed
        list_sets(self.data, "2afc", "train")  # fail early on a bad layout

    def build_model(self) -> nn.Module:
        model = create_model("lpips_2afc", net=self.net, version=self.version, dropout=self.dropout)
        trunk = "random" if self.variant == "scratch" else self.trunk
        lp.load_trunk_weights(model.lpips, lp.random_trunk_state(self.net, self.seed) if trunk == "random" else trunk)
        for w in model.lpips.lins:  # released code: 1x1 conv default init, then projected onto w >= 0
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        model.lpips.clamp_weights()
        model.lpips.net.requires_grad_(self.variant != "lin")
        return model

    def train_dataset(self) -> Dataset:
        return TwoAFCDataset(list_sets(self.data, "2afc", "train"))

    def val_dataset(self) -> Dataset | None:
        try:
            return TwoAFCDataset(list_sets(self.data, "2afc", "val"))
        except FileNotFoundError:
            return None

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return _collate(items)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        unwrap(model).lpips.clamp_weights()  # projection after the previous optimizer step (thesis 6.3)
        d0, d1, h_hat = model(batch["ref"], batch["p0"], batch["p1"])
        h = batch["judge"].view(-1).to(h_hat.dtype)
        with torch.autocast(h_hat.device.type, enabled=False):  # BCE is not autocast-safe
            loss = nn.functional.binary_cross_entropy(h_hat.float(), h.float())  # Eq. 6.2
        with torch.no_grad():
            acc = ((d1 < d0) * h + (d0 < d1) * (1 - h) + (d0 == d1) * 0.5).float().mean()
        return loss, {"acc_2afc": float(acc)}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        raw = unwrap(model)
        raw.lpips.clamp_weights()
        d0s, d1s, hs = [], [], []
        for b in loader:
            d0, d1, _ = raw(b["ref"].to(device), b["p0"].to(device), b["p1"].to(device))
            d0s.append(d0.float().cpu())
            d1s.append(d1.float().cpu())
            hs.append(b["judge"].view(-1))
        return {"val_2afc": score_2afc(torch.cat(d0s), torch.cat(d1s), torch.cat(hs))}

    def params(self) -> dict[str, Any]:
        return {"variant": self.variant, "net": self.net, "trunk": self.trunk, "version": self.version,
                "dropout": self.dropout, "data": str(self.data)}  # fmt: skip

    def data_path(self) -> str | None:
        return str(self.data)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Task flags; also sets the thesis's optimizer settings as this task's engine defaults."""
    parser.add_argument("--data", required=True, help="BAPPS root with 2afc/train/<set> (and 2afc/val/<set>)")
    parser.add_argument("--variant", choices=VARIANTS, default="lin")
    parser.add_argument("--net", choices=sorted(lp.NETS), default="alex")
    parser.add_argument("--trunk", help="pretrained torchvision state_dict for lin/tune (or 'random')")
    parser.add_argument("--version", choices=lp.VERSIONS, default="0.1")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout on squared differences (training)")
    parser.set_defaults(lr=1e-4, beta1=0.5, beta2=0.999, weight_decay=0.0, batch_size=50)


def build(args: argparse.Namespace) -> LpipsTask:
    return LpipsTask(args.data, variant=args.variant, net=args.net, trunk=args.trunk, version=args.version,
                     dropout=args.dropout, seed=args.seed)  # fmt: skip
