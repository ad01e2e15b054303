"""The colorize service: a loaded model + request handling for a batch, with no server in sight.

    >>> svc = ColorizeService.from_weights("runs/demo/train/model.safetensors")
    >>> [r.status for r in svc.handle([Request(body=png_bytes, content_type="image/png")])]
    [200]

Batching: the model's ``predict`` (``chromaflow.models.colorize_batch``) runs once per batch whatever the input
sizes; an item's output does not depend on what shares its batch (see ``tests/serving``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import chromaflow
from chromaflow.export.handler_settings import ARCHIVE_META, DEFAULT_MAX_PIXELS, ServiceConfig
from chromaflow.models.inference import colorize_batch, pick_device
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
from chromaflow.serving.response import Response, image_response

log = logging.getLogger(__name__)

__all__ = [
    "ARCHIVE_META",
    "DEFAULT_MAX_PIXELS",
    "ColorizeService",
    "ModelService",
    "ServiceConfig",
    "colorize_batch",
    "pick_device",
]


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
    """What the services share: the model (eval mode), the handler config, the archive meta, loading from weights
    or an unpacked archive.

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

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config: Any = None,
        *,
        expected_sha256: str | None = None,
        device: torch.device | str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ModelService:
        """Load a ``save_weights`` file (strict, hash-checked when ``expected_sha256`` is given)."""
        return cls(cls.load_model(weights, expected_sha256, device), cls.coerce_config(config), meta)

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike,
        config: Any = None,
        *,
        device: torch.device | str | None = None,
    ) -> ModelService:
        """Load from an unpacked archive (what TorchServe extracts a ``.mar`` to): ``chromaflow_model.json``
        names the weights file and its sha256."""
        meta = read_archive_meta(model_dir, cls.__name__)
        return cls.from_weights(
            Path(model_dir) / meta["weights"], config, expected_sha256=meta["sha256"], device=device, meta=meta
        )

    @property
    def model_info(self) -> dict[str, Any]:
        """Name, version and sha256 of the served model (from the archive), for JSON answers."""
        return {k: self.meta[k] for k in ("name", "version", "sha256") if k in self.meta}


class ColorizeService(ModelService):
    """A colorization model behind ``handle(requests) -> responses`` (one response per request, in order)."""

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
