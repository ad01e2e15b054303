"""Guided colorization maths (thesis ch. 3.3.2): hints painted at model resolution and ``guided_batch``, the
``siggraph17`` model's ragged-batch ``predict``. Request parsing and the service live in ``chromaflow.serving``.

Mapping rules: the network sees L resized (bilinear, antialiased) to ``size x size`` (a multiple of 8). A hint at
pixel ``(x, y)`` of the original image lands on the model pixel ``(floor((floor(x) + 0.5) * size / W),
floor((floor(y) + 0.5) * size / H))`` and is revealed as a ``patch x patch`` square of its ab (mask 1), clipped
at the border; later hints overwrite earlier ones. ``rgb`` hints keep the photo's L: their ab is shrunk toward
gray along the hue until ``Lab(L_pixel, a, b)`` is displayable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from chromaflow import color
from chromaflow.color.constants import Q
from chromaflow.data.hints import paint_squares
from chromaflow.models.inference import lightness, recombine

if TYPE_CHECKING:
    from chromaflow.models.siggraph17 import GuidedOutput

GAMUT_EPS = 1e-6


def guided_ab(
    model: nn.Module,
    l: torch.Tensor,
    hint_ab: torch.Tensor,
    mask: torch.Tensor,
    global_hint: torch.Tensor | None = None,
) -> GuidedOutput:
    """Run the network in Lab units, applying the hint contract stored in ``model.config``.

    Args:
        l: ``(B, 1, H, W)`` L in [0, 100]; hint_ab: ``(B, 2, H, W)`` ab units; mask: ``(B, 1, H, W)`` in {0, 1}.
    Returns:
        ``siggraph17.GuidedOutput`` with ``ab`` in ab units ``(B, 2, H, W)`` and raw ``logits`` ``(B, Q, H/4, W/4)``.
    """
    c = model.config["contract"]
    out = model((l - c["l_cent"]) / c["l_norm"], hint_ab / c["ab_norm"], mask - c["mask_cent"], global_hint)
    return out._replace(ab=out.ab * c["ab_norm"])


@dataclass
class Hint:
    """One user point: pixel ``(x, y)`` of the original image and either ``ab`` or ``rgb`` (0..255)."""

    x: float
    y: float
    ab: tuple[float, float] | None = None
    rgb: tuple[float, float, float] | None = None


def model_position(x: float, y: float, hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Original pixel ``(x, y)`` -> the model pixel ``(mx, my)`` in ``[0, size)`` whose cell holds its centre."""
    h, w = hw
    mx = min(size - 1, int((math.floor(x) + 0.5) * size / w))
    my = min(size - 1, int((math.floor(y) + 0.5) * size / h))
    return mx, my


def rgb_hint_ab(rgb: torch.Tensor, lum: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """ab of sRGB colours, shrunk along their hue until displayable at lightness ``lum``.

    Args:
        rgb: ``(N, 3)`` in [0, 255]; lum: ``(N,)`` L in [0, 100].
    Returns:
        ``(N, 2)`` float64 ab: ``s * ab(rgb)`` with the largest ``s`` in [0, 1] (bisection, ``iters`` steps)
        such that ``Lab(lum, s*a, s*b)`` lies in the sRGB cube (``s = 1`` when it already does).
    """
    ab = color.rgb_to_lab((rgb.double() / 255.0).T[:, :, None])[1:, :, 0].T  # (N, 2)

    def inside(s: torch.Tensor) -> torch.Tensor:
        lab = torch.cat([lum.double()[:, None], ab * s[:, None]], 1).T[:, :, None]  # (3, N, 1)
        raw = color.lab_to_rgb(lab, clip=False)[:, :, 0]
        return ((raw >= -GAMUT_EPS) & (raw <= 1 + GAMUT_EPS)).all(0)

    lo = torch.zeros(len(ab), dtype=torch.float64)
    hi = torch.ones(len(ab), dtype=torch.float64)
    ok = inside(hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        good = inside(mid)
        lo, hi = torch.where(good, mid, lo), torch.where(good, hi, mid)
    return ab * torch.where(ok, torch.ones_like(lo), lo)[:, None]


def hint_planes(
    hints: Sequence[Hint], l_full: torch.Tensor, size: int, patch: int
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """Paint hints into model-resolution planes.

    Args:
        l_full: ``(H, W)`` L of the original image in [0, 100].
    Returns:
        ``hint_ab (2, size, size)`` in ab units, ``mask (1, size, size)`` in {0, 1}, and per hint
        ``{x, y, a, b, model_x, model_y}`` (the ab actually revealed).
    """
    hw = (int(l_full.shape[0]), int(l_full.shape[1]))
    hint_ab = torch.zeros(2, size, size, dtype=torch.float32)
    mask = torch.zeros(1, size, size, dtype=torch.float32)
    if not hints:
        return hint_ab, mask, []
    ab = torch.zeros(len(hints), 2, dtype=torch.float64)
    rgb_idx = [i for i, h in enumerate(hints) if h.rgb is not None]
    for i, h in enumerate(hints):
        if h.ab is not None:
            ab[i] = torch.tensor(h.ab, dtype=torch.float64)
    if rgb_idx:
        rgb = torch.tensor([hints[i].rgb for i in rgb_idx], dtype=torch.float64)
        l_at = torch.stack([l_full[int(hints[i].y), int(hints[i].x)].double() for i in rgb_idx])
        ab[rgb_idx] = rgb_hint_ab(rgb, l_at)
    r = patch // 2
    centres = [model_position(h.x, h.y, hw, size) for h in hints]
    paint_squares(hint_ab, mask, [(my - r, mx - r) for mx, my in centres], patch, [v.float() for v in ab])
    return (
        hint_ab,
        mask,
        [
            {"x": h.x, "y": h.y, "a": float(v[0]), "b": float(v[1]), "model_x": mx, "model_y": my}
            for h, v, (mx, my) in zip(hints, ab, centres, strict=True)
        ],
    )


def distribution_at(logits: torch.Tensor, x: float, y: float, hw: tuple[int, int]) -> torch.Tensor:
    """Probabilities ``(Q,)`` at original pixel ``(x, y)``: ``logits (Q, h, w)`` (quarter resolution of the
    square network input) sampled bilinearly at the pixel centre's relative position, then softmax."""
    h, w = hw
    gx = (math.floor(x) + 0.5) / w * 2 - 1  # align_corners=False: -1 / +1 are the outer edges
    gy = (math.floor(y) + 0.5) / h * 2 - 1
    grid = torch.tensor([[[[gx, gy]]]], dtype=logits.dtype, device=logits.device)
    z = F.grid_sample(logits[None].float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return torch.softmax(z[0, :, 0, 0].double(), dim=0)


@dataclass
class GuidedInput:
    """One colorization request: ``rgb (3, H, W)`` uint8, hints, optional global vector ``(Q+3,)``, point."""

    rgb: torch.Tensor
    hints: list[Hint] = field(default_factory=list)
    global_hint: torch.Tensor | None = None
    point: tuple[float, float] | None = None


@dataclass
class GuidedResult:
    """``rgb (3, H, W)`` float in [0, 1]; ``hints``: what was revealed; ``probs (Q,)`` at the point (or ``None``);
    ``l_point``: L of the original pixel at the point."""

    rgb: torch.Tensor
    hints: list[dict[str, Any]]
    probs: torch.Tensor | None
    l_point: float | None


@torch.inference_mode()
def guided_batch(
    model: nn.Module, items: Sequence[GuidedInput | torch.Tensor], *, size: int = 256, patch: int = 3
) -> list[GuidedResult]:
    """Colorize a batch with one forward pass that also gives each item's distribution at its point.

    An item is a :class:`GuidedInput` or a bare ``(3, H, W)`` uint8 image (no hints, no global hints). Each item's L is resized to ``size x size`` (bilinear, antialiased); the predicted ab ``(2, size, size)``
    is upsampled bilinearly to ``(H, W)`` and recombined with the full-resolution L (as the automatic service).
    """
    if not items:
        return []
    items = [it if isinstance(it, GuidedInput) else GuidedInput(rgb=it) for it in items]
    param = next(model.parameters())
    device = param.device
    has_global = getattr(model, "global_branch", None) is not None
    model.eval()
    ls, smalls, hab, masks, glob, applied = [], [], [], [], [], []
    for it in items:
        L = lightness(it.rgb, device)  # (1, 1, H, W), strip by strip
        ls.append(L)
        smalls.append(F.interpolate(L, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
        a, m, info = hint_planes(it.hints, L[0, 0].cpu(), size, patch)
        hab.append(a)
        masks.append(m)
        applied.append(info)
        if has_global:
            glob.append(it.global_hint if it.global_hint is not None else torch.zeros(Q + 3))
    g = torch.stack(glob).to(device, param.dtype) if has_global else None
    out = guided_ab(
        model,
        torch.cat(smalls).to(param.dtype),
        torch.stack(hab).to(device, param.dtype),
        torch.stack(masks).to(device, param.dtype),
        g,
    )
    results = []
    for i, (it, L) in enumerate(zip(items, ls, strict=True)):
        hw = (int(L.shape[2]), int(L.shape[3]))
        rgb = recombine(L, out.ab[i : i + 1])[0]
        probs = l_point = None
        if it.point is not None:
            px, py = it.point
            probs = distribution_at(out.logits[i], px, py, hw)
            l_point = float(L[0, 0, int(py), int(px)])
        results.append(GuidedResult(rgb=rgb, hints=applied[i], probs=probs, l_point=l_point))
    return results
