"""The settings of each TorchServe handler family (the ``handler:`` section of its ``serving/*model-config.yaml``),
below both ``export`` (which validates them when it builds an archive) and ``serving`` (which runs with them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chromaflow.color.constants import Q
from chromaflow.color.palette import PALETTE_K, PALETTE_TEMPERATURE
from chromaflow.color.upsample import DEFAULT_UPSAMPLE, UPSAMPLE_METHODS
from chromaflow.settings import from_mapping

ARCHIVE_META = "chromaflow_model.json"  # inside a .mar: weights file name, sha256, config, lineage
DEFAULT_MAX_PIXELS = 12_000_000  # ~ 4240 x 2830; larger images get 413
ENDPOINTS = ("colorize_guided", "palette", "gamut")  # the user-guided archive's endpoint names
LPIPS_MAX_PIXELS = 4_000_000  # per image
LPIPS_WEIGHTS_FILE = "lpips.safetensors"  # the weights' name inside an LPIPS archive
TRANSLATE_MAX_PIXELS = 4_000_000  # per image (input and style); n outputs of it are held at once


@dataclass
class ServiceConfig:
    """Handler settings (the ``handler:`` section of ``serving/model-config.yaml``).

    ``max_pixels``: largest accepted W*H; ``size``: side of the square L fed to the network;
    ``method``: decode method (annealed_mean | mean | mode); ``num_threads``: torch CPU threads (0: leave);
    ``max_memory_mb``: the TorchServe worker's data memory limit (0: none; applied by the handler,
    :func:`~chromaflow.serving.torchserve.limit_worker_memory`); ``upsample``: how predicted ab reaches each
    photo's size (``bilinear`` | ``guided``, :func:`chromaflow.color.upsample_ab`).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    size: int = 256
    method: str = "annealed_mean"
    num_threads: int = 0
    max_memory_mb: int = 0
    upsample: str = DEFAULT_UPSAMPLE

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> ServiceConfig:
        return from_mapping(cls, d, "handler config", cls.problems)

    def problems(self) -> list[str]:
        problems = []
        if self.max_pixels < 1 or self.size < 8:
            problems.append(f"max_pixels must be >= 1 and size >= 8, got {self}")
        if self.upsample not in UPSAMPLE_METHODS:
            problems.append(f"upsample must be one of {list(UPSAMPLE_METHODS)}, got {self.upsample!r}")
        return problems


@dataclass
class GuidedConfig:
    """Handler settings (``handler:`` of ``serving/guided-model-config.yaml``).

    ``size``: side of the square network input (multiple of 8); ``hint_patch``: odd side of the revealed
    square per hint at model resolution; ``max_hints``: more get 400; ``palette_k`` / ``palette_temperature``:
    suggested palette; ``swatch_resolution``: side of the gamut swatch; ``endpoint``: ``auto`` (from the
    TorchServe model name) or one of :data:`ENDPOINTS`; ``num_threads``: torch CPU threads (0: leave);
    ``max_memory_mb``: the TorchServe worker's data memory limit (0: none; applied by the handler).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    size: int = 256
    hint_patch: int = 3
    max_hints: int = 256
    palette_k: int = PALETTE_K
    palette_temperature: float = PALETTE_TEMPERATURE
    swatch_resolution: int = 221
    endpoint: str = "auto"
    num_threads: int = 0
    max_memory_mb: int = 0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> GuidedConfig:
        return from_mapping(cls, d, "guided handler config", cls.problems)

    def problems(self) -> list[str]:
        cfg, problems = self, []
        if cfg.max_pixels < 1:
            problems.append(f"max_pixels must be >= 1, got {cfg.max_pixels}")
        if cfg.size < 8 or cfg.size % 8:
            problems.append(f"size must be a positive multiple of 8, got {cfg.size}")
        if cfg.hint_patch < 1 or cfg.hint_patch % 2 == 0:
            problems.append(f"hint_patch must be odd and >= 1, got {cfg.hint_patch}")
        if cfg.max_hints < 0:
            problems.append(f"max_hints must be >= 0, got {cfg.max_hints}")
        if not 1 <= cfg.palette_k <= Q:
            problems.append(f"palette_k must be in [1, {Q}], got {cfg.palette_k}")
        if not cfg.palette_temperature > 0:
            problems.append(f"palette_temperature must be > 0, got {cfg.palette_temperature}")
        if cfg.swatch_resolution < 2:
            problems.append(f"swatch_resolution must be >= 2, got {cfg.swatch_resolution}")
        if cfg.endpoint != "auto" and cfg.endpoint not in ENDPOINTS:
            problems.append(f"endpoint must be auto or one of {ENDPOINTS}, got {cfg.endpoint!r}")
        return problems


@dataclass(frozen=True)
class LpipsConfig:
    """Handler settings (``handler:`` of ``serving/lpips-model-config.yaml``).

    ``max_pixels``: largest accepted image (W*H, each of the two; 413 above, checked from the header);
    ``num_threads``: torch CPU threads per worker (0: leave torch's default); ``max_memory_mb``: the
    TorchServe worker's data memory limit (0: none; :func:`~chromaflow.serving.torchserve.limit_worker_memory`).
    """

    max_pixels: int = LPIPS_MAX_PIXELS
    num_threads: int = 0
    max_memory_mb: int = 0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> LpipsConfig:
        return from_mapping(cls, d, "lpips handler config", cls.problems)

    def problems(self) -> list[str]:
        cfg, problems = self, []
        if cfg.max_pixels < 1:
            problems.append(f"max_pixels must be >= 1, got {cfg.max_pixels}")
        if cfg.num_threads < 0:
            problems.append(f"num_threads must be >= 0, got {cfg.num_threads}")
        return problems


@dataclass(frozen=True)
class TranslateConfig:
    """Handler settings (``handler:`` of ``serving/translate-model-config.yaml``).

    ``size``: short side of the input as the network sees it (the model's training crop size); ``max_samples``:
    most outputs per request (at most ``chromaflow.models.translation.MAX_SAMPLES``); ``max_pixels``: largest
    accepted image, input or style (413 above, checked from the header); ``num_threads``, ``max_memory_mb``: as
    :class:`ServiceConfig`.
    """

    size: int = 128
    max_samples: int = 16
    max_pixels: int = TRANSLATE_MAX_PIXELS
    num_threads: int = 0
    max_memory_mb: int = 0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> TranslateConfig:
        return from_mapping(cls, d, "translate handler config", cls.problems)

    def problems(self) -> list[str]:
        from chromaflow.models.translation import MAX_SAMPLES

        cfg, problems = self, []
        if cfg.size < 8:
            problems.append(f"size must be >= 8, got {cfg.size}")
        if not 1 <= cfg.max_samples <= MAX_SAMPLES:
            problems.append(f"max_samples must be in [1, {MAX_SAMPLES}], got {cfg.max_samples}")
        if cfg.max_pixels < 1 or cfg.num_threads < 0:
            problems.append(f"max_pixels must be >= 1 and num_threads >= 0, got {cfg}")
        return problems
