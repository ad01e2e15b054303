"""User-guided colorization (thesis ch. 3): L + simulated hints -> ab, plus the distribution side-head.

    chromaflow train --task guided --data runs/demo/prepared --out runs/guided --width 0.25 --crop 176 --steps 2000

Per batch, on the training device: RGB uint8 -> Lab; local hints simulated for the whole batch
(:func:`chromaflow.data.hints.simulate_local_hints`: geometric p = 1/8 points, Gaussian locations, 1..9 px
patches of mean ground-truth ab, 1% full reveal); with ``--global-hints`` the global branch also sees the
ground-truth histogram and saturation, each revealed with probability ½ (both, either or neither).

Loss (Eq. 3.4-3.6): smooth-l1 (Huber, delta = 1 ab unit, i.e. ``1 / ab_norm`` on the network's scaled
output, as in the released code) between predicted and ground-truth ab, mean over pixels, plus
``--dist-weight`` x the soft-encoded cross-entropy of the distribution head at H/4 (10 nearest bins,
sigma 5, as ch. 3.3.2 says). The side head is detached inside the network, so it does not train the
main branch. Trained from scratch here (the thesis initialized conv1-8 from the ch. 2 network); ``--init``
continues from a siggraph17 model of the same width and options (strict: a missing or extra key is an error).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from chromaflow import color
from chromaflow.color.constants import SOFT_K_REFERENCE, SOFT_SIGMA
from chromaflow.data.hints import global_hints, simulate_local_hints
from chromaflow.data.hints import warm_up as warm_hints
from chromaflow.models import create_model, load_weights
from chromaflow.models.weights import load_state_strict
from chromaflow.train.losses import classification_loss
from chromaflow.train.tasks import colorization

VAL_HINT_SEED = 12345  # validation always sees the same simulated hints


class GuidedTask(colorization.ColorizationTask):
    """The ch. 3 task; data plumbing shared with the ch. 2 task."""

    name = "guided"

    def __init__(self, *args: Any, global_hints: bool = False, dist_weight: float = 1.0, **kwargs: Any):
        kwargs.setdefault("soft_k", SOFT_K_REFERENCE)
        super().__init__(*args, loss="softce", **kwargs)
        self.loss_kind = "huber+dist"
        self.use_global, self.dist_weight = global_hints, dist_weight
        # None while training: hints come from the global torch RNG, which the engine seeds and checkpoints
        self.generator: torch.Generator | None = None

    def prepare(self, device: torch.device) -> None:
        super().prepare(device)
        warm_hints(device)

    def build_model(self) -> nn.Module:
        model = create_model("siggraph17", width=self.width, global_hints=self.use_global)
        if self.init:  # continue from a siggraph17 model of the same width: every key must match
            load_state_strict(model, load_weights(self.init, contract=self.contract).state_dict(), source=self.init)
        return model

    def _forward(self, model: nn.Module, rgb: torch.Tensor):  # type: ignore[override]
        if rgb.shape[-1] % 8 or rgb.shape[-2] % 8:
            raise ValueError(f"guided: crop must be a multiple of 8, got {tuple(rgb.shape[-2:])}")
        l_in, ab = self._targets(rgb)
        c = self.contract
        hint, mask = simulate_local_hints(ab, generator=self.generator)
        g = global_hints(ab, rgb.float() / 255, generator=self.generator) if self.use_global else None
        out = model(l_in, hint / c["ab_norm"], mask - c["mask_cent"], g)
        with torch.autocast(rgb.device.type, enabled=False):
            pred = out.ab.float()
            huber = F.smooth_l1_loss(pred, ab / c["ab_norm"], beta=1.0 / c["ab_norm"], reduction="none").sum(1).mean()
            huber = huber * c["ab_norm"]  # in ab units, so delta = 1 ab unit and the scale matches Eq. 3.4
            logits = out.logits.float()
            ab_small = F.interpolate(ab, size=logits.shape[-2:], mode="area")
            idx, w = color.encode_soft(ab_small, k=self.soft_k, sigma=self.soft_sigma)
            dist = classification_loss(logits, idx, w, None)
        return huber, dist, pred * c["ab_norm"], ab

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        huber, dist, _, _ = self._forward(model, batch["rgb"])
        # extras stay tensors (the engine reads them after the step): no host sync inside a compiled step
        return huber + self.dist_weight * dist, {"huber": huber.detach(), "dist_ce": dist.detach()}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        """Mean val loss (fixed hint seed, so comparable across evaluations) and the RMS ab error."""
        self.generator = torch.Generator(device=device).manual_seed(VAL_HINT_SEED)  # on the device: no copies
        tot, sq, n, px = 0.0, 0.0, 0, 0
        try:
            for batch in loader:
                huber, dist, pred, ab = self._forward(model, batch["rgb"].to(device))
                tot, n = tot + float(huber + self.dist_weight * dist), n + 1
                sq, px = sq + float((pred - ab).pow(2).sum(1).sum()), px + ab[:, 0].numel()
        finally:
            self.generator = None
        return {"val_loss": tot / max(n, 1), "val_ab_rmse": (sq / max(px, 1)) ** 0.5}

    def params(self) -> dict[str, Any]:
        return {**super().params(), "global_hints": self.use_global, "dist_weight": self.dist_weight}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    colorization.add_data_arguments(parser)
    parser.add_argument("--width", type=float, default=0.25, help="siggraph17 channel multiplier (1 = thesis)")
    parser.add_argument("--crop", type=int, default=176, help="training crop (multiple of 8; thesis 176)")
    parser.add_argument("--global-hints", action="store_true", help="also train the global-hints branch")
    parser.add_argument("--dist-weight", type=float, default=1.0, help="weight of the distribution side-head loss")
    parser.add_argument("--soft-k", type=int, default=SOFT_K_REFERENCE, help="soft-encoding neighbours (ch. 3: 10)")
    parser.add_argument("--init", help="siggraph17 weights of the same width to continue from")


def build(args: argparse.Namespace) -> GuidedTask:
    train_set, val_set = colorization.datasets(args.data, args.crop, args.extra_data)
    return GuidedTask(
        train_set,
        val_set,
        width=args.width,
        soft_k=args.soft_k,
        soft_sigma=SOFT_SIGMA,
        global_hints=args.global_hints,
        dist_weight=args.dist_weight,
        init=args.init,
        data=colorization.data_inputs(args),
    )
