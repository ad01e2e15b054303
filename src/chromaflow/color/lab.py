"""sRGB <-> CIE Lab (D65, 2-degree observer) in torch: batched, device-agnostic, differentiable.

The formulas and constants are those of scikit-image's ``rgb2lab`` / ``lab2rgb`` (sRGB IEC 61966-2-1
transfer curve, the sRGB->XYZ matrix of ``skimage.color.colorconv.xyz_from_rgb``, white point
(0.95047, 1, 1.08883), CIE f(t) with the 0.008856 / 7.787 linear segment), so results agree with
skimage to ~1e-10 in float64 (tested exhaustively over all 2^24 uint8 colours).

uint8 input takes a fast path: the sRGB linearization is a 256-entry lookup table (computed once per
device in float64, then cast to float32), which replaces the pow() over every pixel; the rest follows in
float32: one fixed sequence of 14 whole-batch ops, whatever the batch size, with no host sync (tables and
matrices are cached per device). Eager on the CPU (:data:`CPU_BLOCKED`), the pixels go in chunks small enough
that every op stays in cache and on the calling thread (torch's parallel grain is 32768 elements: on a loaded
machine a multi-threaded op over a small tensor waits on descheduled workers), with the 3x3 matrices as scalar
multiply-adds written in place: 2.5x faster on one thread. Both agree to float32 rounding.

Example::

    >>> import torch
    >>> from chromaflow.color import rgb_to_lab, lab_to_rgb
    >>> rgb = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    >>> lab = rgb_to_lab(rgb)                  # float32, L in [0, 100], ab in about [-110, 110]
    >>> back = (lab_to_rgb(lab) * 255).round().to(torch.uint8)
    >>> bool((back == rgb).all())
    True
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from chromaflow.color.constants import L_NORM

__all__ = [
    "rgb_to_lab",
    "lab_to_rgb",
    "lightness_u8",
    "RgbToLab",
    "LabToRgb",
    "srgb_to_linear",
    "linear_to_srgb",
    "CPU_BLOCKED",
    "cpu_blocked",
    "canonical_device",
    "device_cached",
]

# sRGB (linear) -> XYZ, as in skimage.color.colorconv.xyz_from_rgb; its inverse is computed, as skimage does.
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float64,
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)  # CIE D65, 2-degree observer

_SRGB_THRESH = 0.04045  # sRGB-encoded threshold of the linear segment
_LINEAR_THRESH = 0.0031308  # linear-light threshold of the linear segment
_LAB_EPS = 0.008856  # (6/29)^3 as rounded by skimage
_LAB_KAPPA = 7.787  # slope of f(t) below _LAB_EPS, as in skimage
_LAB_DELTA_INV = 0.2068966  # 6/29: threshold of f^-1


def _check_image(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name}: expected shape (*, 3, H, W), got {tuple(x.shape)}")
    return x


CPU_BLOCKED = True
"""Eager CPU calls of the colour core (here and :mod:`chromaflow.color.encode`) run in cache-sized blocks of
pixels. False: the fixed sequence of whole-batch ops that other devices and ``torch.compile`` run (same values;
used to count those ops on a machine without a GPU)."""


def device_cached(fn):
    """Cache ``fn(*args)`` (hashable args, e.g. a device) in a plain dict: tables are built once per device, and
    ``torch.compile`` reads a built table as a constant (it would trace a ``functools`` cache's function again;
    a build under compile runs eagerly, at the cost of a graph break, so warm the tables up first)."""
    cache: dict = {}
    build = torch.compiler.disable(fn)

    @functools.wraps(fn)
    def get(*args):
        args = tuple(canonical_device(a) if isinstance(a, torch.device) else a for a in args)
        hit = cache.get(args)
        if hit is None:
            hit = cache[args] = build(*args)
        return hit

    return get


_CANONICAL: dict[torch.device, torch.device] = {}


def canonical_device(device: torch.device) -> torch.device:
    """The device a tensor made on ``device`` reports: ``cuda`` -> ``cuda:0`` (the current one), ``cpu:0`` -> ``cpu``.

    Caches key on it, so that a table warmed up for ``torch.device("cuda")`` is the one a step on ``x.device``
    finds (a miss would build it inside the step: a host sync, and a graph break under compile)."""
    hit = _CANONICAL.get(device)
    if hit is None:
        hit = _CANONICAL[device] = torch.empty(0, device=device).device
    return hit


def cpu_blocked(t: Tensor) -> bool:
    """Whether work on ``t`` takes the blocked CPU path (see :data:`CPU_BLOCKED`)."""
    return t.device.type == "cpu" and CPU_BLOCKED and not torch.compiler.is_compiling()


@device_cached
def _matrix(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The 3x3 colour matrices on ``device`` (cached: no host-to-device copy per call)."""
    m = _XYZ_FROM_RGB / _WHITE_D65[:, None] if name == "xyz_from_rgb" else _RGB_FROM_XYZ * _WHITE_D65[None, :]
    return torch.as_tensor(m, dtype=dtype, device=device)


def _mix(x: Tensor, name: str) -> Tensor:
    """Apply the 3x3 matrix ``name`` over the channel axis -3 of ``x (*, 3, H, W)``."""
    return torch.einsum("ij,...jhw->...ihw", _matrix(name, x.device, x.dtype), x)


@device_cached
def _srgb_lut(device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(256,)``: linear light of each sRGB uint8 value (computed in float64, then cast)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(v > _SRGB_THRESH, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
    return torch.as_tensor(lin, dtype=dtype, device=device)


_UINT8_CHUNK = 32767 // 3  # pixels per CPU chunk: every (3, chunk) temporary stays under the parallel grain


_M_ROWS = (_XYZ_FROM_RGB / _WHITE_D65[:, None]).tolist()  # white point folded into the matrix rows


def _uint8_block_to_lab(x: Tensor, out: Tensor) -> None:
    """``x (3, P)`` uint8 -> Lab written into ``out (3, P)`` float32, in place (one of the CPU's blocks)."""
    lut = _srgb_lut(x.device, torch.float32)
    lin = lut.index_select(0, x.int().reshape(-1)).view(x.shape)
    l0, l1, l2 = lin.unbind(0)
    xyz = torch.empty_like(lin)
    for row, (m0, m1, m2) in zip(xyz.unbind(0), _M_ROWS, strict=True):  # the 3x3 matrix as scalar ops: no BLAS
        torch.mul(l0, m0, out=row).add_(l1, alpha=m1).add_(l2, alpha=m2)
    f = torch.where(xyz > _LAB_EPS, xyz.clamp(min=_LAB_EPS).pow_(1.0 / 3.0), xyz * _LAB_KAPPA + 16.0 / 116.0)
    fx, fy, fz = f.unbind(0)
    o_l, o_a, o_b = out.unbind(0)
    torch.mul(fy, 116.0, out=o_l).sub_(16.0)
    torch.sub(fx, fy, out=o_a).mul_(500.0)
    torch.sub(fy, fz, out=o_b).mul_(200.0)


@device_cached
def _fixed_tables(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """float32 on ``device``: the XYZ matrix ``(1, 3, 3, 1)`` (white folded in), the Lab scale and offset ``(1, 3, 1)``."""
    m = torch.tensor(_M_ROWS, dtype=torch.float32, device=device).view(1, 3, 3, 1)
    scale = torch.tensor([116.0, 500.0, 200.0], device=device).view(1, 3, 1)
    return m, scale, torch.tensor([-16.0, 0.0, 0.0], device=device).view(1, 3, 1)


def _uint8_to_lab_fixed(x: Tensor) -> Tensor:
    """``x (N, 3, P)`` uint8 -> float32 Lab ``(N, 3, P)``: 14 whole-batch ops, no ``out=`` (compiles in one graph)."""
    m, scale, offset = _fixed_tables(x.device)
    lin = _srgb_lut(x.device, torch.float32).index_select(0, x.int().reshape(-1)).view(x.shape)
    xyz = (lin.unsqueeze(1) * m).sum(2)  # (N, 3, P)
    f = torch.where(xyz > _LAB_EPS, xyz.clamp(min=_LAB_EPS).pow(1.0 / 3.0), xyz * _LAB_KAPPA + 16.0 / 116.0)
    # (fy, fx - fy, fy - fz) * (116, 500, 200) + (-16, 0, 0), rounded as the blocked path rounds it
    return torch.addcmul(offset, torch.cat([f[:, 1:2], f[:, :2] - f[:, 1:]], 1), scale)


def _uint8_to_lab(rgb: Tensor) -> Tensor:
    """``(*, 3, H, W)`` uint8 -> float32 Lab: whole batch, or chunk by chunk on the CPU (module docstring)."""
    x = rgb.reshape(-1, 3, rgb.shape[-2] * rgb.shape[-1])
    if not cpu_blocked(rgb):
        return _uint8_to_lab_fixed(x).view(rgb.shape[:-3] + (3,) + rgb.shape[-2:])
    out = torch.empty(x.shape, dtype=torch.float32, device=rgb.device)
    hw = x.shape[-1]
    for i in range(x.shape[0]):
        for s in range(0, hw, _UINT8_CHUNK):
            e = min(hw, s + _UINT8_CHUNK)
            _uint8_block_to_lab(x[i, :, s:e], out[i, :, s:e])
    return out.view(rgb.shape[:-3] + (3,) + rgb.shape[-2:])


def warm_up(device: torch.device) -> None:
    """Build the uint8 path's tables on ``device`` now (before ``torch.compile`` traces a step)."""
    _srgb_lut(device, torch.float32)
    _fixed_tables(device)


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """sRGB-encoded values in [0, 1] (any shape, float) -> linear light, the sRGB transfer curve."""
    safe = torch.clamp(rgb, min=_SRGB_THRESH)  # keeps pow() and its gradient finite on the other branch
    return torch.where(rgb > _SRGB_THRESH, ((safe + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(lin: Tensor) -> Tensor:
    """Linear light (any shape, float) -> sRGB-encoded values (not clipped)."""
    safe = torch.clamp(lin, min=_LINEAR_THRESH)
    return torch.where(lin > _LINEAR_THRESH, 1.055 * safe ** (1 / 2.4) - 0.055, lin * 12.92)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB -> CIE Lab (D65), matching ``skimage.color.rgb2lab``.

    Args:
        rgb: ``(*, 3, H, W)``; uint8 in [0, 255] (fast lookup-table path) or float in [0, 1].
    Returns:
        ``(*, 3, H, W)`` Lab: L in [0, 100], a in about [-86, 98], b in about [-108, 95] for sRGB input.
        float32 for uint8 input, else the input's float dtype. Differentiable for float input.
    """
    _check_image(rgb, "rgb")
    if rgb.dtype == torch.uint8:
        return _uint8_to_lab(rgb)
    if rgb.is_floating_point():
        lin = srgb_to_linear(rgb)
    else:
        raise TypeError(f"rgb: expected uint8 or a floating dtype, got {rgb.dtype}")
    xyz = _mix(lin, "xyz_from_rgb")  # white point folded into the matrix rows
    safe = torch.clamp(xyz, min=_LAB_EPS)
    f = torch.where(xyz > _LAB_EPS, safe.pow(1.0 / 3.0), _LAB_KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def lightness_u8(rgb: np.ndarray) -> np.ndarray:
    """The CIE L of sRGB pixels ``(H, W, 3)`` uint8 as 8-bit gray ``(H, W)`` uint8: ``round(L / L_NORM * 255)``
    (:func:`rgb_to_lab`), the gray input of the gray -> colour pairs and of a translation model serving them."""
    lightness = rgb_to_lab(torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1))[0].numpy()  # (H, W), a copy
    return np.clip(np.rint(lightness * (255.0 / L_NORM)), 0, 255).astype(np.uint8)  # numpy: torch's round costs ms


def lab_to_rgb(lab: Tensor, clip: bool = True) -> Tensor:
    """CIE Lab (D65) -> sRGB, matching ``skimage.color.lab2rgb``.

    Args:
        lab: ``(*, 3, H, W)`` float, L in [0, 100], ab in about [-110, 110].
        clip: clip the result to [0, 1] (as skimage always does). Either way, like skimage, a negative
            Z (an impossible colour) is set to 0 before the XYZ->RGB step.
    Returns:
        ``(*, 3, H, W)`` float RGB (in [0, 1] when ``clip``), same dtype as ``lab``. Differentiable.
    """
    _check_image(lab, "lab")
    if not lab.is_floating_point():
        raise TypeError(f"lab: expected a floating dtype, got {lab.dtype}")
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = torch.clamp(fy - b / 200.0, min=0.0)
    f = torch.stack((fx, fy, fz), dim=-3)
    safe = torch.clamp(f, min=_LAB_DELTA_INV)
    xyz = torch.where(f > _LAB_DELTA_INV, safe**3, (f - 16.0 / 116.0) / _LAB_KAPPA)
    lin = _mix(xyz, "rgb_from_xyz")
    rgb = linear_to_srgb(lin)
    return rgb.clamp(0.0, 1.0) if clip else rgb


class RgbToLab(nn.Module):
    """Module twin of :func:`rgb_to_lab`: ``(*, 3, H, W)`` sRGB -> Lab."""

    def forward(self, rgb: Tensor) -> Tensor:
        return rgb_to_lab(rgb)


class LabToRgb(nn.Module):
    """Module twin of :func:`lab_to_rgb`: ``(*, 3, H, W)`` Lab -> sRGB in [0, 1] (when ``clip``)."""

    def __init__(self, clip: bool = True) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, lab: Tensor) -> Tensor:
        return lab_to_rgb(lab, clip=self.clip)
