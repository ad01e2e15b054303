"""The ``translate`` endpoint (BicycleGAN, thesis ch. 4): an input image -> N samples, independent of any server.

    >>> svc = TranslateService.from_weights("weights/bicyclegan/model.safetensors")
    >>> r = svc.handle([Request(body={"image": b64_png, "n": 4, "seed": 7}, content_type="application/json")])[0]
    >>> r.status, len(r.json()["images"])
    (200, 4)

Requests: :mod:`.translate_request`. Answer (default, ``format: json``): ``{"images": [base64 x n],
"content_type": "image/png", "width", "height", "n", "seed", "source": prior | given | style, "z": [[...] x n],
"inverted", "model"}`` (``seed`` and ``z`` reproduce the samples); ``format: png | jpeg`` with ``n = 1``: the image.
Every request is parsed and answered under its own guard; the valid ones share one ``translate_batch``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from chromaflow.export.handler_settings import TranslateConfig
from chromaflow.models.translation import TranslateResult, translate_batch
from chromaflow.serving.isolation import guarded, run_isolated
from chromaflow.serving.request import Request
from chromaflow.serving.response import Response, encode_image
from chromaflow.serving.service import ModelService
from chromaflow.serving.translate_request import TranslateRequest, parse_translate

__all__ = ["TranslateConfig", "TranslateService", "answer"]


def answer(parsed: TranslateRequest, result: TranslateResult, model_info: dict[str, Any]) -> Response:
    """One request's response: the samples as JSON (base64 each) or, for ``format png | jpeg``, the one image."""
    alpha = parsed.image.alpha if parsed.output == "png" else None
    encoded = [encode_image(img.float() / 255.0, parsed.output, alpha) for img in result.images]
    ctype = f"image/{parsed.output}"
    if parsed.envelope == "raw":
        return Response(200, ctype, encoded[0])
    h, w = parsed.image.size
    doc = {
        "images": [base64.b64encode(data).decode("ascii") for data in encoded],
        "content_type": ctype,
        "width": w,
        "height": h,
        "n": len(encoded),
        "seed": result.seed,
        "source": result.source,
        "z": result.z.tolist(),
        "inverted": result.inverted,
        "model": model_info,
    }
    return Response(200, "application/json", json.dumps(doc, allow_nan=False).encode("utf-8"))


class TranslateService(ModelService):
    """A ``bicyclegan`` model behind ``handle(requests) -> responses`` (one response per request, in order)."""

    config_type = TranslateConfig
    architecture = "bicyclegan"

    def handle(self, requests: Sequence[Request]) -> list[Response]:
        """Parse every request, translate the valid ones in one batch, encode every answer. A bad request gets its
        4xx JSON, a server fault on one its 500 JSON; neither touches the others in the batch."""
        responses: list[Response | None] = [None] * len(requests)
        jobs: list[tuple[int, TranslateRequest]] = []
        nz, has_encoder = int(self.model.nz), getattr(self.model, "encoder", None) is not None
        for i, req in enumerate(requests):
            parsed, err = guarded(f"translate request {i}", parse_translate, req, self.config, nz, has_encoder)
            if err is not None:
                responses[i] = err
            else:
                jobs.append((i, parsed))  # type: ignore[arg-type]

        def compute(batch: Sequence[tuple[int, TranslateRequest]]) -> list[TranslateResult]:
            return translate_batch(self.model, [p.item for _, p in batch], size=self.config.size)

        for (i, parsed), res in zip(jobs, run_isolated("translate batch", compute, jobs), strict=True):
            if isinstance(res, Response):
                responses[i] = res
                continue
            out, err = guarded(f"translate request {i} (answer)", answer, parsed, res, self.model_info)
            responses[i] = out if err is None else err
        return responses  # type: ignore[return-value]
