"""Inference of the colorization kinds: the ragged-batch ``colorize_batch`` (the one path) and its callers.

>>> import torch
>>> from chromaflow.models import colorize, create_model
>>> out = colorize(create_model("eccv16", width=0.25), torch.rand(2, 3, 120, 90))
>>> out.shape, float(out.min()) >= 0, float(out.max()) <= 1
(torch.Size([2, 3, 120, 90]), True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chromaflow import color
from chromaflow.models.registry import ModelDescription

STRIP_PIXELS = 1 << 18  # pixels per strip of full-resolution work: temporaries stay a few MB at any image size


def strips(h: int, w: int) -> list[slice]:
    """Row slices of an ``h x w`` image, about :data:`STRIP_PIXELS` pixels each."""
    rows = max(1, STRIP_PIXELS // max(w, 1))
    return [slice(r, min(h, r + rows)) for r in range(0, h, rows)]


def pick_device(requested: str | torch.device | None = "auto", index: int | str | None = 0) -> torch.device:
    """The one device picker. ``"auto"`` (or ``None``): ``cuda:<index>`` (modulo the GPU count) when CUDA is
    there, else ``mps`` when available, else ``cpu``. Anything else is that device (``"cuda"`` gets ``index``);
    asking for CUDA where there is none is a ``ValueError``."""
    index = int(index or 0)
    if requested is not None and str(requested) != "auto":
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {str(requested)!r} requested but CUDA is not available")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", index)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", index % torch.cuda.device_count())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def lightness(img: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """CIE L of images of one size, strip by strip (memory: the output plus one strip of Lab per image).

    Args:
        img: ``(3, H, W)`` or ``(n, 3, H, W)``; uint8 in [0, 255] (the lookup-table path of ``color.rgb_to_lab``)
            or float in [0, 1].
    Returns:
        ``(n, 1, H, W)`` (``n = 1`` for one image) float32 L in [0, 100] on ``device`` (default: ``img``'s).
    """
    x = img[None] if img.ndim == 3 else img
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"lightness: image must be (3, H, W) or (n, 3, H, W), got {tuple(img.shape)}")
    n, h, w = int(x.shape[0]), int(x.shape[2]), int(x.shape[3])
    out = torch.empty(n, 1, h, w, dtype=torch.float32, device=device or img.device)
    for rows in strips(h, w):  # strips of rows of every image: the op count does not grow with n
        part = x[:, :, rows].to(out.device)
        out[:, :, rows] = color.rgb_to_lab(part if part.dtype == torch.uint8 else part.float())[:, :1]
    return out


def recombine(L: torch.Tensor, ab: torch.Tensor, upsample: str = color.DEFAULT_UPSAMPLE) -> torch.Tensor:
    """Full-resolution ``L (n, 1, H, W)`` + low-resolution ``ab (n, 2, h, w)`` (upsampled by ``upsample``,
    ``color.upsample_ab``) -> float RGB ``(n, 3, H, W)`` in [0, 1], converted strip by strip (the same values as
    one ``lab_to_rgb`` call)."""
    n, h, w = int(L.shape[0]), int(L.shape[2]), int(L.shape[3])
    ab = ab.float()
    if upsample == "guided":  # one image at a time: ~15 full-resolution planes of its image, not of the batch
        ab = torch.cat([color.upsample_ab(a, l, upsample) for a, l in zip(ab.split(1), L.split(1), strict=True)])
    else:  # the whole batch in one op: the op count does not grow with n
        ab = color.upsample_ab(ab, L, upsample)
    out = torch.empty(n, 3, h, w, dtype=torch.float32, device=L.device)
    for rows in strips(h, w):  # strips of rows of every image: the op count does not grow with n
        out[:, :, rows] = color.lab_to_rgb(torch.cat([L[:, :, rows], ab[:, :, rows]], dim=1))
    return out


def to_uint8_hwc(rgb: torch.Tensor) -> np.ndarray:
    """Float RGB ``(3, H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8 (rounded), strip by strip (no full-size temporaries)."""
    h, w = int(rgb.shape[1]), int(rgb.shape[2])
    out = np.empty((h, w, 3), dtype=np.uint8)
    for rows in strips(h, w):
        part = (rgb[:, rows].detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        out[rows] = part.permute(1, 2, 0).cpu().numpy()
    return out


def image_example() -> np.ndarray:
    """A uint8 ``(1, 32, 32, 3)`` image (a ramp in R, gray elsewhere): the image kinds' input example."""
    example = np.full((1, 32, 32, 3), 128, np.uint8)
    example[0, :, :, 0] = np.linspace(0, 255, 32, dtype=np.uint8)
    return example


@torch.inference_mode()
def colorize_batch(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    T: Sequence[float | None] | float | None = None,
    *,
    size: int = 256,
    method: str = "annealed_mean",
    upsample: str = color.DEFAULT_UPSAMPLE,
) -> list[torch.Tensor]:
    """Colorize images of different sizes with one forward pass: the automatic model's ``predict``.

    Args:
        model: eccv16-like, with ``.config["contract"]``; eval mode is set.
        images: each ``(3, H_i, W_i)`` uint8 in [0, 255] or float in [0, 1].
        T: one temperature, or one per image; ``None`` uses the contract's T.
        size: L is resized (bilinear, antialiased) to ``size x size`` for the network.
        method: ``"annealed_mean" | "mean" | "mode"`` (class head only; see ``color.decode_ab``).
        upsample: how predicted ab reaches each image's size: ``"bilinear"`` (thesis) | ``"guided"`` (edge-aware,
            guided by the full-resolution L; ``color.upsample_ab``).

    Returns:
        per image, float RGB ``(3, H_i, W_i)`` in [0, 1] on the model's device (full-resolution L,
        predicted ab upsampled by ``upsample``). The full-resolution work goes in strips (:func:`lightness`,
        :func:`recombine`): a 12 MP image needs ~0.3 GB, not ~2.5 GB. Images of one size and T share every op.
    """
    if not images:
        return []
    if size < 8:
        raise ValueError(f"colorize: size must be >= 8, got {size}")
    temps = list(T) if isinstance(T, Sequence) else [T] * len(images)
    if len(temps) != len(images):
        raise ValueError(f"colorize_batch: {len(temps)} temperatures for {len(images)} images")
    contract = model.config["contract"]
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    model.eval()
    groups: dict[tuple[Any, ...], list[int]] = {}  # images of one size and T share every op: ops per group
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"colorize_batch: image {i} must be (3, H, W), got {tuple(img.shape)}")
        groups.setdefault((tuple(img.shape), img.dtype, temps[i]), []).append(i)
    Ls, smalls = [], []
    for members in groups.values():
        L = lightness(torch.stack([images[i] for i in members]), device)  # (n, 1, H, W) in [0, 100]
        Ls.append(L)
        smalls.append(F.interpolate(L, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    pred = model(((torch.cat(smalls) - contract["l_cent"]) / contract["l_norm"]).to(dtype)).float()
    outs: list[torch.Tensor] = [None] * len(images)  # type: ignore[list-item]
    start = 0
    for (_, _, temp), members, L in zip(groups, groups.values(), Ls, strict=True):
        p = pred[start : start + len(members)]
        start += len(members)
        if p.shape[1] == 2:  # regression head: ab / ab_norm
            ab = p * contract["ab_norm"]
        else:
            ab = color.decode_ab(p, method=method, T=contract["T"] if temp is None else temp)  # (n, 2, s/4, s/4)
        for i, rgb in zip(members, recombine(L, ab, upsample), strict=True):
            outs[i] = rgb
    return outs


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


def colorize(
    model: nn.Module,
    rgb: torch.Tensor,
    T: float | None = None,
    method: str = "annealed_mean",
    size: int = 256,
    batch_size: int = 16,
    upsample: str = color.DEFAULT_UPSAMPLE,
) -> torch.Tensor:
    """Colorize a batch of one size: :func:`colorize_batch`, ``batch_size`` images per forward pass.

    Args:
        model: a colorization model with ``.config["contract"]`` (``eccv16``, class or regression head).
        rgb: ``(B, 3, H, W)`` uint8 in [0, 255] or float in [0, 1] (uint8 is divided by 255 first); any H, W
            (colour is ignored: only L is used). It may live on any device; work happens on the model's device.
        T, method, size, upsample: as :func:`colorize_batch` (``T=None``: the contract's T, 0.38 by default).

    Returns:
        float RGB ``(B, 3, H, W)`` in [0, 1] on ``rgb``'s device. Its L equals the input's L up to
        the gamut clipping of ``lab_to_rgb``.
    """
    x = _as_unit_float(rgb)
    if size < 8:
        raise ValueError(f"colorize: size must be >= 8, got {size}")
    was_training = model.training
    try:
        outs = [
            torch.stack(colorize_batch(model, list(chunk), T, size=size, method=method, upsample=upsample)).to(
                rgb.device
            )
            for chunk in x.split(batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def colorization_description(served_size: int, **extra: Any) -> ModelDescription:
    """The :class:`~chromaflow.models.registry.ModelDescription` of an automatic colorizer (L -> Q-bin logits or ab
    at H/4, with ``.config["contract"]``): :func:`colorize_batch` as ``predict``, annealed-mean decoding, uint8
    images in and out, the ``colorize`` handler, served at ``served_size``; ``extra`` adds fields (e.g. the
    ``feature_layers`` and ``forward_features`` of transfer evaluation)."""
    return ModelDescription(
        kind="colorization",
        predict=colorize_batch,
        to_output=to_uint8_hwc,
        example=image_example,
        served_size=served_size,
        decode="annealed_mean",
        handler="colorize",
        **extra,
    )
