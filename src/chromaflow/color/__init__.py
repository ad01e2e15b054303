"""The CIE Lab colour core: sRGB <-> Lab, the 313 ab bins, soft/hard encoding, decoding, prior and rebalancing.

Shapes and ranges: RGB ``(*, 3, H, W)`` uint8 or float in [0, 1]; L in [0, 100]; ab in about [-110, 110];
bin scores ``(B, Q, H, W)`` with ``Q = 313``. Constants live in :mod:`chromaflow.color.constants`.
"""

from chromaflow.color.decode import decode_ab
from chromaflow.color.encode import encode_hard, encode_soft, soft_cross_entropy
from chromaflow.color.gamut import ab_bins, ab_bins_numpy, derive_ab_bins
from chromaflow.color.lab import LabToRgb, RgbToLab, lab_to_rgb, lightness_u8, rgb_to_lab
from chromaflow.color.prior import load_prior, rebalance_weights, smooth_prior
from chromaflow.color.upsample import DEFAULT_UPSAMPLE, UPSAMPLE_METHODS, upsample_ab

__all__ = [
    # contract (docs/contracts.md)
    "rgb_to_lab",
    "lab_to_rgb",
    "lightness_u8",
    "ab_bins",
    "encode_hard",
    "encode_soft",
    "soft_cross_entropy",
    "decode_ab",
    "smooth_prior",
    "rebalance_weights",
    "load_prior",
    # extras
    "RgbToLab",
    "LabToRgb",
    "ab_bins_numpy",
    "derive_ab_bins",
    "upsample_ab",
    "UPSAMPLE_METHODS",
    "DEFAULT_UPSAMPLE",
]
