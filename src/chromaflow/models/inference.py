"""Inference: colorize RGB (or grayscale-as-RGB) photos of any size with a colorization model.

>>> import torch
>>> from chromaflow.models import colorize, create_model
>>> out = colorize(create_model("eccv16", width=0.25), torch.rand(2, 3, 120, 90))
>>> out.shape, float(out.min()) >= 0, float(out.max()) <= 1
(torch.Size([2, 3, 120, 90]), True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chromaflow import color


def _as_unit_float(rgb: torch.Tensor) -> torch.Tensor:
    if not isinstance(rgb, torch.Tensor):
        raise TypeError(f"colorize: rgb must be a torch.Tensor, got {type(rgb).__name__}")
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"colorize: rgb must have shape (B, 3, H, W), got {tuple(rgb.shape)}")
    if rgb.dtype == torch.uint8:
        return rgb.float() / 255.0
    if not rgb.is_floating_point():
        raise TypeError(f"colorize: rgb must be uint8 or float in [0, 1], got {rgb.dtype}")
    return rgb.float()


@torch.inference_mode()
def colorize(
    model: nn.Module,
    rgb: torch.Tensor,
    T: float | None = None,
    method: str = "annealed_mean",
    size: int = 256,
    batch_size: int = 16,
    upsample: str = color.DEFAULT_UPSAMPLE,
) -> torch.Tensor:
    """Predict ab from the lightness of ``rgb`` and recombine it with the full-resolution L.

    Args:
        model: a colorization model with ``.config["contract"]`` (``eccv16``, class or regression head).
        rgb: ``(B, 3, H, W)`` uint8 in [0, 255] or float in [0, 1]; any H, W (colour is ignored:
            only L is used). It may live on any device; work happens on the model's device.
        T: annealed-mean temperature; ``None`` uses the model's contract T (0.38 by default).
        method: ``"annealed_mean" | "mean" | "mode"`` (class head only; see ``color.decode_ab``).
        size: L is resized (square, bilinear with antialiasing) to ``size x size`` for the network.
        batch_size: images per forward pass.
        upsample: how predicted ab reaches the photo's size: ``"bilinear"`` (thesis) | ``"guided"`` (edge-aware,
            guided by the full-resolution L; ``color.upsample_ab``).

    Returns:
        float RGB ``(B, 3, H, W)`` in [0, 1] on ``rgb``'s device. Its L equals the input's L up to
        the gamut clipping of ``lab_to_rgb``.
    """
    x = _as_unit_float(rgb)
    if size < 8:
        raise ValueError(f"colorize: size must be >= 8, got {size}")
    contract = model.config["contract"]
    T = contract["T"] if T is None else T
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    was_training = model.training
    model.eval()
    outs = []
    try:
        for chunk in x.split(batch_size):
            c = chunk.to(device)
            L = color.rgb_to_lab(c)[:, :1]  # (b, 1, H, W), [0, 100]
            small = F.interpolate(L, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            pred = model(((small - contract["l_cent"]) / contract["l_norm"]).to(dtype)).float()
            # (b, 2, size/4, size/4): a regression head predicts ab / ab_norm, a class head logits over Q bins
            ab = pred * contract["ab_norm"] if pred.shape[1] == 2 else color.decode_ab(pred, method=method, T=T)
            ab = color.upsample_ab(ab, L, upsample)
            outs.append(color.lab_to_rgb(torch.cat([L, ab], dim=1)).to(rgb.device))
    finally:
        model.train(was_training)
    return torch.cat(outs)
