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

Everything runs on the device of its inputs, with an explicit ``torch.Generator`` for seeding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from chromaflow.color import encode_hard
from chromaflow.color.constants import Q

GEOMETRIC_P = 1 / 8
PATCH_SIZES = tuple(range(1, 10))
FULL_REVEAL = 0.01


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


def simulate_local_hints(
    ab: torch.Tensor,
    *,
    p: float = GEOMETRIC_P,
    patch_sizes: tuple[int, ...] = PATCH_SIZES,
    full_reveal: float = FULL_REVEAL,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate user points on a batch.

    Args:
        ab: ground-truth ab ``(B, 2, H, W)`` in ab units ([-110, 110]).
    Returns:
        ``hint_ab (B, 2, H, W)`` (ab units, 0 where no hint) and ``mask (B, 1, H, W)`` in {0, 1}.
    """
    _check_ab(ab)
    if not 0 < p <= 1:
        raise ValueError(f"hints: geometric p must be in (0, 1], got {p}")
    bsz, _, h, w = ab.shape
    dev = ab.device
    g = generator

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=g.device if g is not None else "cpu").to(dev)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=g.device if g is not None else "cpu").to(dev)

    # number of successes before the first failure, P(continue) = 1 - p
    u = rand(bsz).clamp_min(torch.finfo(torch.float32).tiny)
    if p < 1:
        counts = torch.floor(torch.log(u) / torch.log1p(torch.tensor(-p, device=dev))).long()
    else:
        counts = torch.zeros(bsz, dtype=torch.long, device=dev)
    n_max = int(counts.max()) if bsz else 0
    hint = torch.zeros_like(ab)
    mask = torch.zeros(bsz, 1, h, w, dtype=ab.dtype, device=dev)
    if n_max > 0:
        sizes_t = torch.tensor(patch_sizes, device=dev)
        size = sizes_t[(rand(bsz, n_max) * len(patch_sizes)).long().clamp_max(len(patch_sizes) - 1)]
        size = torch.minimum(size, torch.tensor(min(h, w), device=dev))
        span_y, span_x = (h - size + 1).double(), (w - size + 1).double()
        y = (span_y / 2 + span_y / 4 * randn(bsz, n_max).double()).round().long()
        x = (span_x / 2 + span_x / 4 * randn(bsz, n_max).double()).round().long()
        y = torch.minimum(y.clamp_min(0), h - size)
        x = torch.minimum(x.clamp_min(0), w - size)
        valid = torch.arange(n_max, device=dev).unsqueeze(0) < counts.unsqueeze(1)  # (B, n_max)
        bi = torch.arange(bsz, device=dev).unsqueeze(1).expand(bsz, n_max)
        bi, y, x, size = bi[valid], y[valid], x[valid], size[valid]
        order = torch.arange(bi.numel(), device=dev)  # later points win, as in the sequential original
        means = patch_means(ab, bi, y, x, size)  # (N, 2)
        # paint: every point expands to a 9x9 offset grid, offsets beyond its size dropped
        k = max(patch_sizes)
        off = torch.arange(k, device=dev)
        dy, dx = off.view(1, k, 1), off.view(1, 1, k)
        inside = (dy < size.view(-1, 1, 1)) & (dx < size.view(-1, 1, 1))  # (N, k, k)
        pix = (bi.view(-1, 1, 1) * h + y.view(-1, 1, 1) + dy) * w + x.view(-1, 1, 1) + dx
        owner = torch.full((bsz * h * w,), -1, dtype=torch.long, device=dev)
        owner.scatter_reduce_(0, pix[inside], order.view(-1, 1, 1).expand_as(pix)[inside], reduce="amax")
        owned = owner >= 0
        flat_hint = hint.permute(0, 2, 3, 1).reshape(-1, 2)
        flat_hint[owned] = means[owner[owned]]
        hint = flat_hint.view(bsz, h, w, 2).permute(0, 3, 1, 2).contiguous()
        mask = owned.to(ab.dtype).view(bsz, 1, h, w)
    if full_reveal > 0:
        full = rand(bsz) < full_reveal
        hint[full] = ab[full]
        mask[full] = 1
    return hint, mask


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
    gdev = generator.device if generator is not None else "cpu"
    b_hist = (torch.rand(bsz, generator=generator, device=gdev) < reveal_hist).float().to(dev)
    b_sat = (torch.rand(bsz, generator=generator, device=gdev) < reveal_sat).float().to(dev)
    hist = ab_histogram(ab) * b_hist[:, None]
    sat = hsv_saturation(rgb.float()) * b_sat
    return torch.cat([hist, b_hist[:, None], sat[:, None], b_sat[:, None]], dim=1)
