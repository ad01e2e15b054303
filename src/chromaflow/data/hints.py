"""Simulated user hints for the user-guided network (thesis ch. 3.3.2-3.3.3), vectorized per batch.

Local hints (:func:`simulate_local_hints`): per image, the number of points is geometric with
``p = 1/8`` (count of successes before the first failure, mean ``(1-p)/p = 7``, as the released code
draws it); each point is a square patch of side ``P ~ U{1..9}`` whose top-left corner is Gaussian
around the centre (mean ``(H-P+1)/2``, std ``(H-P+1)/4`` as in the released code; the thesis text
writes the covariance in a garbled form), clipped into the image; the mean ground-truth ab inside
the patch is revealed over the whole patch and the mask is 1 there. Later points overwrite earlier
ones where they overlap. With probability ``full_reveal`` (1%) the whole ground truth is revealed.

Global hints (:func:`global_hints`): the ab histogram at quarter resolution (hard-encoded to the
Q bins, averaged spatially) and the mean HSV saturation, each revealed independently with
probability ``reveal_hist`` / ``reveal_sat`` (½ each: both, either or neither equally often; the
thesis does not give the probabilities).

Everything runs on the device of its inputs as a fixed sequence of tensor ops (no host sync, the same ops for
any batch size), with an explicit ``torch.Generator`` for seeding (else the device's default stream). The
number of points of one image is capped at :data:`MAX_POINTS` so that shapes are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from chromaflow.color import encode_hard
from chromaflow.color.constants import Q
from chromaflow.color.lab import device_cached

GEOMETRIC_P = 1 / 8
PATCH_SIZES = tuple(range(1, 10))
FULL_REVEAL = 0.01
MAX_POINTS = 64  # points per image are capped (fixed shapes, no host sync): P(N > 64) = (7/8)^65 ~ 2e-4


def _check_ab(ab: torch.Tensor) -> None:
    if not isinstance(ab, torch.Tensor):
        raise TypeError(f"hints: ab must be a torch.Tensor, got {type(ab).__name__}")
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"hints: ab must have shape (B, 2, H, W), got {tuple(ab.shape)}")


def patch_means(
    ab: torch.Tensor, b: torch.Tensor, y: torch.Tensor, x: torch.Tensor, size: torch.Tensor
) -> torch.Tensor:
    """Mean ab of square patches via an integral image.

    Args:
        ab: ``(B, 2, H, W)``.
        b, y, x, size: ``(N,)`` long: image index, top-left corner, side (patch inside the image).
    Returns:
        ``(N, 2)`` mean ab of each patch.
    """
    s = F.pad(ab.double().cumsum(2).cumsum(3), (1, 0, 1, 0))  # (B, 2, H+1, W+1)
    y1, x1 = y + size, x + size
    total = s[b, :, y1, x1] - s[b, :, y, x1] - s[b, :, y1, x] + s[b, :, y, x]
    return (total / (size * size).unsqueeze(1)).to(ab.dtype)


def paint_squares(
    hint: torch.Tensor,
    mask: torch.Tensor,
    corners: Sequence[tuple[int, int]],
    side: int,
    values: Sequence[torch.Tensor],
) -> None:
    """Paint hints in place, one square after another (later squares overwrite earlier ones).

    Args:
        hint: ``(..., 2, H, W)`` ab planes; mask: ``(..., 1, H, W)``.
        corners: per square its top-left ``(y, x)``; a negative one is clipped at the border (so is the far side).
        values: per square its ab ``(2,)``, written over the square; the mask gets 1 there.
    """
    for (y, x), v in zip(corners, values, strict=True):
        ys, xs = slice(max(0, y), y + side), slice(max(0, x), x + side)
        hint[..., ys, xs] = v[:, None, None]
        mask[..., ys, xs] = 1.0


def _draw(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``torch.rand`` / ``torch.randn`` of ``shape`` on ``device``: from ``generator`` (moved to ``device`` if it
    lives elsewhere), else from ``device``'s own default stream (no host-to-device copy)."""
    fn = torch.rand if kind == "rand" else torch.randn
    if generator is None:
        return fn(*shape, device=device)
    return fn(*shape, generator=generator, device=generator.device).to(device)


@device_cached
def _sizes_on(patch_sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(patch_sizes, device=device)


def warm_up(device: torch.device, patch_sizes: tuple[int, ...] = PATCH_SIZES) -> None:
    """Build the hint and histogram tables on ``device`` now (before ``torch.compile`` traces a step)."""
    from chromaflow.color import encode

    _sizes_on(tuple(patch_sizes), device)
    encode.warm_up(device, (1,))


def simulate_local_hints(
    ab: torch.Tensor,
    *,
    p: float = GEOMETRIC_P,
    patch_sizes: tuple[int, ...] = PATCH_SIZES,
    full_reveal: float = FULL_REVEAL,
    generator: torch.Generator | None = None,
    max_points: int = MAX_POINTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate user points on a batch: a fixed sequence of tensor ops whatever the batch, no host sync.

    Args:
        ab: ground-truth ab ``(B, 2, H, W)`` in ab units ([-110, 110]).
        max_points: cap on the points of one image (fixed shapes; see :data:`MAX_POINTS`).
    Returns:
        ``hint_ab (B, 2, H, W)`` (ab units, 0 where no hint) and ``mask (B, 1, H, W)`` in {0, 1}.
    """
    _check_ab(ab)
    if not 0 < p <= 1:
        raise ValueError(f"hints: geometric p must be in (0, 1], got {p}")
    if max_points < 1:
        raise ValueError(f"hints: max_points must be >= 1, got {max_points}")
    bsz, _, h, w = ab.shape
    dev, n, g = ab.device, max_points, generator
    # number of successes before the first failure, P(continue) = 1 - p
    u = _draw("rand", (bsz,), g, dev).clamp_min(torch.finfo(torch.float32).tiny)
    counts = torch.floor(torch.log(u) / math.log1p(-p)) if p < 1 else torch.zeros(bsz, device=dev)  # (B,)
    sizes_t = _sizes_on(tuple(patch_sizes), dev)
    pick = (_draw("rand", (bsz, n), g, dev) * len(patch_sizes)).long().clamp_max(len(patch_sizes) - 1)
    size = sizes_t[pick].clamp_max(min(h, w))  # (B, n)
    span_y, span_x = (h - size + 1).double(), (w - size + 1).double()
    y = (span_y / 2 + span_y / 4 * _draw("randn", (bsz, n), g, dev).double()).round().long()
    x = (span_x / 2 + span_x / 4 * _draw("randn", (bsz, n), g, dev).double()).round().long()
    y = torch.minimum(y.clamp_min(0), h - size)
    x = torch.minimum(x.clamp_min(0), w - size)
    valid = torch.arange(n, device=dev) < counts.unsqueeze(1)  # (B, n): the first counts[b] points
    bi = torch.arange(bsz, device=dev).unsqueeze(1).expand(bsz, n)
    means = patch_means(ab, bi.reshape(-1), y.reshape(-1), x.reshape(-1), size.reshape(-1))  # (B * n, 2)
    # paint: every point expands to a k x k offset grid; offsets beyond its size, and invalid points, go to a
    # spare last element; later points win where they overlap, as in the sequential original
    k = max(patch_sizes)
    off = torch.arange(k, device=dev)
    dy, dx = off.view(1, 1, k, 1), off.view(1, 1, 1, k)
    side = size.view(bsz, n, 1, 1)
    inside = (dy < side) & (dx < side) & valid.view(bsz, n, 1, 1)  # (B, n, k, k)
    pix = ((bi.reshape(bsz, n, 1, 1) * h + y.view(bsz, n, 1, 1) + dy) * w + x.view(bsz, n, 1, 1) + dx).where(
        inside, bsz * h * w
    )
    order = torch.arange(bsz * n, device=dev).view(bsz, n, 1, 1).expand_as(pix)
    owner = torch.full((bsz * h * w + 1,), -1, dtype=torch.long, device=dev)
    owner = owner.scatter_reduce_(0, pix.reshape(-1), order.reshape(-1), reduce="amax")[:-1]
    owned = (owner >= 0).view(bsz, h, w, 1)
    hint = torch.where(owned, means[owner.clamp_min(0)].view(bsz, h, w, 2), 0.0).permute(0, 3, 1, 2)
    mask = owned.permute(0, 3, 1, 2).to(ab.dtype)
    if full_reveal > 0:
        full = (_draw("rand", (bsz,), g, dev) < full_reveal).view(bsz, 1, 1, 1)
        hint = torch.where(full, ab, hint)
        mask = torch.where(full, 1.0, mask)
    return hint.contiguous(), mask


def hsv_saturation(rgb: torch.Tensor) -> torch.Tensor:
    """Mean HSV saturation ``(max - min) / max`` (0 where max is 0) of ``rgb (B, 3, H, W)`` in [0, 1] -> ``(B,)``."""
    mx = rgb.amax(1)
    mn = rgb.amin(1)
    sat = torch.where(mx > 0, (mx - mn) / mx.clamp_min(1e-12), torch.zeros_like(mx))
    return sat.mean((1, 2))


def ab_histogram(ab: torch.Tensor) -> torch.Tensor:
    """Global colour histogram: ab ``(B, 2, H, W)`` resized to quarter resolution (bilinear), each pixel
    hard-encoded to its nearest of the Q bins, averaged spatially -> ``(B, Q)`` summing to 1."""
    _check_ab(ab)
    h, w = max(1, ab.shape[2] // 4), max(1, ab.shape[3] // 4)
    small = F.interpolate(ab.float(), size=(h, w), mode="bilinear", align_corners=False)
    idx = encode_hard(small).flatten(1)  # (B, h*w)
    hist = torch.zeros(ab.shape[0], Q, device=ab.device).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
    return hist / idx.shape[1]


def global_hints(
    ab: torch.Tensor,
    rgb: torch.Tensor,
    *,
    reveal_hist: float = 0.5,
    reveal_sat: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Global hint vector ``(B, Q + 3)`` = ``[hist * B_hist, B_hist, sat * B_sat, B_sat]``.

    Args:
        ab: ``(B, 2, H, W)`` ground-truth ab; rgb: ``(B, 3, H, W)`` in [0, 1] (for saturation).
        reveal_hist, reveal_sat: probability that each statistic is revealed (independently).
    """
    bsz = ab.shape[0]
    dev = ab.device
    b_hist = (_draw("rand", (bsz,), generator, dev) < reveal_hist).float()
    b_sat = (_draw("rand", (bsz,), generator, dev) < reveal_sat).float()
    hist = ab_histogram(ab) * b_hist[:, None]
    sat = hsv_saturation(rgb.float()) * b_sat
    return torch.cat([hist, b_hist[:, None], sat[:, None], b_sat[:, None]], dim=1)
