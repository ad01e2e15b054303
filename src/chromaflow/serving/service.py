"""The colorize service: a loaded model + request handling for a batch, with no server in sight.

    >>> svc = ColorizeService.from_weights("runs/demo/train/model.safetensors")
    >>> [r.status for r in svc.handle([Request(body=png_bytes, content_type="image/png")])]
    [200]

Batching: the network runs once per batch on L resized to ``size x size``, whatever the input sizes;
each item's ab is upsampled to its own resolution and recombined with its own full-resolution L,
so an item's output does not depend on what shares its batch (see ``tests/serving``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import chromaflow
from chromaflow import color
from chromaflow.serving.isolation import guarded, run_isolated
from chromaflow.serving.request import (
    JSON_CONTENT_TYPE,
    DecodedImage,
    Options,
    Request,
    decode_image,
    json_object,
    media_type,
    parse_options,
)
from chromaflow.serving.response import Response, image_response, strips

log = logging.getLogger(__name__)

ARCHIVE_META = "chromaflow_model.json"  # inside a .mar: weights file name, sha256, config, lineage
DEFAULT_MAX_PIXELS = 12_000_000  # ~ 4240 x 2830; larger images get 413


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
    upsample: str = color.DEFAULT_UPSAMPLE

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> ServiceConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"handler config: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**{k: type(getattr(cls, k))(v) for k, v in d.items()})
        if cfg.max_pixels < 1 or cfg.size < 8:
            raise ValueError(f"handler config: max_pixels must be >= 1 and size >= 8, got {cfg}")
        if cfg.upsample not in color.UPSAMPLE_METHODS:
            raise ValueError(
                f"handler config: upsample must be one of {list(color.UPSAMPLE_METHODS)}, got {cfg.upsample!r}"
            )
        return cfg


def pick_device(gpu_id: int | str | None = None) -> torch.device:
    """``cuda:<gpu_id>`` when CUDA is there, else ``mps`` when available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id or 0)}")
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
    # one image at a time: "guided" holds ~15 full-resolution planes of its image, not of the whole batch
    ab = torch.cat([color.upsample_ab(a, l, upsample) for a, l in zip(ab.float().split(1), L.split(1), strict=True)])
    out = torch.empty(n, 3, h, w, dtype=torch.float32, device=L.device)
    for rows in strips(h, w):  # strips of rows of every image: the op count does not grow with n
        out[:, :, rows] = color.lab_to_rgb(torch.cat([L[:, :, rows], ab[:, :, rows]], dim=1))
    return out


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
    """Colorize images of different sizes with one forward pass (same maths as ``chromaflow.models.colorize``).

    Args:
        model: eccv16-like, with ``.config["contract"]``; eval mode is set.
        images: each ``(3, H_i, W_i)`` uint8 in [0, 255] or float in [0, 1].
        T: one temperature, or one per image; ``None`` uses the contract's T.
        size: L is resized (bilinear, antialiased) to ``size x size`` for the network.
        upsample: ``"bilinear"`` | ``"guided"`` (see :func:`recombine`).

    Returns:
        per image, float RGB ``(3, H_i, W_i)`` in [0, 1] on the model's device (full-resolution L,
        predicted ab upsampled by ``upsample``). The full-resolution work goes in strips (:func:`lightness`,
        :func:`recombine`): a 12 MP image needs ~0.3 GB, not ~2.5 GB.
    """
    if not images:
        return []
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


def read_archive_meta(model_dir: str | os.PathLike, who: str, *, required: bool = True) -> dict[str, Any]:
    """``chromaflow_model.json`` of an unpacked archive (weights file name, sha256, config, lineage).

    A missing file is a ``FileNotFoundError`` naming ``who`` (``{}`` when not ``required``); an archive built by
    another chromaflow version is served with a warning.
    """
    meta_path = Path(model_dir) / ARCHIVE_META
    if not meta_path.is_file():
        if not required:
            return {}
        raise FileNotFoundError(f"{who}: {meta_path} missing: not an archive made by chromaflow export")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    built_with = meta.get("chromaflow_version")
    if built_with and built_with != chromaflow.__version__:
        log.warning("archive built with chromaflow %s, serving with %s", built_with, chromaflow.__version__)
    return meta


class ModelService:
    """What the colorize and guided services share: the model (eval mode), the handler config, the archive meta.

    Subclasses set ``config_type`` (a dataclass with ``from_mapping`` and ``num_threads``) and ``architecture``
    (the registry name the weights must hold; ``None``: any).
    """

    config_type: Any = ServiceConfig
    architecture: str | None = None

    def __init__(self, model: nn.Module, config: Any = None, meta: Mapping[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = self.coerce_config(config)
        self.meta = dict(meta or {})
        if self.config.num_threads > 0:
            torch.set_num_threads(self.config.num_threads)

    @classmethod
    def coerce_config(cls, config: Any) -> Any:
        """``config`` as ``config_type`` (a mapping is validated by its ``from_mapping``; ``None``: defaults)."""
        return config if isinstance(config, cls.config_type) else cls.config_type.from_mapping(config)

    @classmethod
    def load_model(
        cls, weights: str | os.PathLike, expected_sha256: str | None = None, device: torch.device | str | None = None
    ) -> nn.Module:
        """A ``save_weights`` file, strict and hash-checked when ``expected_sha256`` is given, on ``device``
        (default :func:`pick_device`); a file of another architecture is a ``ValueError``."""
        from chromaflow.models import load_weights

        model = load_weights(weights, expected_sha256, device=device or pick_device())
        if cls.architecture and model.config.get("name") != cls.architecture:
            raise ValueError(
                f"{cls.__name__}: {weights} holds a {model.config.get('name')!r} model, not {cls.architecture}"
            )
        return model

    @property
    def model_info(self) -> dict[str, Any]:
        """Name, version and sha256 of the served model (from the archive), for JSON answers."""
        return {k: self.meta[k] for k in ("name", "version", "sha256") if k in self.meta}


class ColorizeService(ModelService):
    """A colorization model behind ``handle(requests) -> responses`` (one response per request, in order)."""

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config: ServiceConfig | Mapping[str, Any] | None = None,
        *,
        expected_sha256: str | None = None,
        device: torch.device | str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ColorizeService:
        """Load a ``save_weights`` file (strict, hash-checked when ``expected_sha256`` is given)."""
        return cls(cls.load_model(weights, expected_sha256, device), cls.coerce_config(config), meta)

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike,
        config: ServiceConfig | Mapping[str, Any] | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> ColorizeService:
        """Load from an unpacked archive (what TorchServe extracts a ``.mar`` to): ``chromaflow_model.json``
        names the weights file and its sha256."""
        meta = read_archive_meta(model_dir, cls.__name__)
        return cls.from_weights(
            Path(model_dir) / meta["weights"], config, expected_sha256=meta["sha256"], device=device, meta=meta
        )

    def handle(self, requests: Sequence[Request]) -> list[Response]:
        """Decode and validate every request, colorize the valid ones in one batch, encode every answer.

        Each request is parsed, validated and answered under its own guard (:mod:`.isolation`): a bad one gets
        its 4xx JSON, a server fault on one its 500 JSON; neither touches the others in the batch.
        """
        responses: list[Response | None] = [None] * len(requests)
        ok: list[tuple[int, DecodedImage, Options]] = []
        for i, req in enumerate(requests):
            parsed, err = guarded(f"request {i}", self._parse, req)
            if err is not None:
                responses[i] = err
            else:
                ok.append((i, *parsed))  # type: ignore[misc]
        T_default = self.model.config["contract"]["T"]

        def compute(jobs: Sequence[tuple[int, DecodedImage, Options]]) -> list[torch.Tensor]:
            imgs, temps = [img.rgb for _, img, _ in jobs], [o.T for _, _, o in jobs]
            return colorize_batch(
                self.model, imgs, temps, size=self.config.size, method=self.config.method, upsample=self.config.upsample
            )

        for (i, img, opts), rgb in zip(ok, run_isolated("colorize batch", compute, ok), strict=True):
            if isinstance(rgb, Response):
                responses[i] = rgb
                continue
            meta = {"T": T_default if opts.T is None else opts.T, "model": self.model_info}
            answer, err = guarded(f"request {i} (encoding)", image_response, rgb, img, opts, meta)
            responses[i] = answer if err is None else err
        return responses  # type: ignore[return-value]

    def _parse(self, req: Request) -> tuple[DecodedImage, Options]:
        json_typed = media_type(req.content_type) == JSON_CONTENT_TYPE
        if req.body is not None and (json_typed or not isinstance(req.body, bytes | bytearray | str)):
            req = replace(req, body=json_object(req.body))  # once, bounded; options may sit in the JSON object
        opts = parse_options(req)
        return decode_image(req, max_pixels=self.config.max_pixels), opts
