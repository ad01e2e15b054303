"""Responses independent of any server: encoded images, JSON envelopes and JSON errors."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import torch
from PIL import Image

from chromaflow.models.inference import to_uint8_hwc
from chromaflow.serving.request import DecodedImage, Options, RequestError

JPEG_QUALITY = 92


@dataclass
class Response:
    """``status`` (HTTP code), ``content_type``, ``body`` bytes; ``reason`` is the HTTP reason phrase."""

    status: int
    content_type: str
    body: bytes

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return json.loads(self.body)


def error_response(err: RequestError) -> Response:
    """A JSON error: ``{"code": 4xx, "error": kind, "message": why}``."""
    return Response(err.status, "application/json", json.dumps(err.to_dict()).encode("utf-8"))


def encode_image(rgb: torch.Tensor, fmt: str, alpha: torch.Tensor | None = None) -> bytes:
    """Encode float RGB ``(3, H, W)`` in [0, 1] as PNG (with ``alpha (H, W)`` uint8 when given) or JPEG."""
    arr = to_uint8_hwc(rgb)
    buf = io.BytesIO()
    if fmt == "png":
        if alpha is not None:
            arr = np.concatenate([arr, alpha.cpu().numpy()[..., None]], axis=-1)
        Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    elif fmt == "jpeg":
        Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        raise ValueError(f"encode_image: format must be png or jpeg, got {fmt!r}")
    return buf.getvalue()


def image_response(rgb: torch.Tensor, image: DecodedImage, opts: Options, meta: dict[str, Any]) -> Response:
    """The colorized ``rgb (3, H, W)`` as a raw image, or as JSON ``{image: base64, content_type, width, height,
    **meta}`` when ``opts.envelope == "json"``."""
    data = encode_image(rgb, opts.output, image.alpha if opts.output == "png" else None)
    ctype = f"image/{opts.output}"
    if opts.envelope != "json":
        return Response(200, ctype, data)
    h, w = image.size
    doc = {"image": base64.b64encode(data).decode("ascii"), "content_type": ctype, "width": w, "height": h, **meta}
    return Response(200, "application/json", json.dumps(doc).encode("utf-8"))


def internal_error() -> Response:
    """A 500 JSON for a fault of the server on one request (logged server-side; nothing of the request echoed)."""
    doc = {"code": 500, "error": "internal_error", "message": "the server failed on this request (logged); retry"}
    return Response(500, "application/json", json.dumps(doc).encode("utf-8"))
