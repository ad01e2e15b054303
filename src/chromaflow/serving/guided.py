"""User-guided colorization endpoints (thesis ch. 3.3.2), independent of any server.

Three endpoints share one service and one loaded ``siggraph17`` model; each request is a JSON object
(``Content-Type: application/json``) with a base64 ``image`` (PNG, JPEG or WebP, as ``chromaflow.serving``):

- ``colorize_guided``: ``{image, hints: [{x, y, r, g, b} | {x, y, a, b}], global: {histogram, saturation},
  point: {x, y}, k, format}`` -> a PNG at the input's resolution (``format: "json"``: ``{image, hints,
  palette (when point), ...}``).
- ``palette``: ``{image, hints, point, k, with_image}`` -> ``{colors: [{a, b, weight, rgb, in_gamut}], L, ...}``:
  the K suggested colours at ``point`` given the current hints (weighted k-means, K = 9, on the predicted
  distribution), and the colorization from the same forward pass when ``with_image`` is true.
- ``gamut``: ``{L}`` or ``{image, point}`` -> the in-gamut ab swatch at that lightness (JSON with a base64
  RGBA PNG whose alpha is 0 outside the sRGB gamut; ``format: "png"`` for the raw PNG).

The mapping rules (also in ``serving/README.md``):

- The network sees L resized (bilinear, antialiased) to ``size x size`` (a multiple of 8), like the
  automatic service. A hint at pixel ``(x, y)`` of the original image (after EXIF orientation;
  ``0 <= x < W``, ``0 <= y < H``, fractions allowed) lands on the model pixel
  ``(floor((floor(x) + 0.5) * size / W), floor((floor(y) + 0.5) * size / H))`` and is revealed as a
  ``hint_patch x hint_patch`` square (default 3x3, clipped at the border) of its ab, mask 1.
  Later hints overwrite earlier ones where patches overlap.
- ``{a, b}`` hints are used as given (each in [-110, 110]). ``{r, g, b}`` hints (sRGB, 0..255) are
  converted to CIE Lab (D65); their L is dropped (the output keeps the photo's L) and their ab is
  shrunk toward gray along the same hue, just enough that ``Lab(L_pixel, a, b)`` is a displayable
  sRGB colour, where ``L_pixel`` is the L of the original pixel ``(floor(x), floor(y))``.
- One forward pass returns colour and distribution: the distribution at a point is the softmax of the
  quarter-resolution logits sampled bilinearly at the point's model position.
- Global hints (only for a model built with them): ``[hist * B_hist, B_hist, sat * B_sat, B_sat]`` as in
  training; without ``global`` that model gets the all-zero vector (nothing revealed).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromaflow import color
from chromaflow.color.constants import Q
from chromaflow.color.palette import PALETTE_K, PALETTE_TEMPERATURE, ab_swatch, suggest_palette
from chromaflow.export.handler_settings import ENDPOINTS, GuidedConfig
from chromaflow.models.guided import (  # the maths; re-exported for the endpoints' callers
    GAMUT_EPS,
    GuidedInput,
    GuidedResult,
    Hint,
    distribution_at,
    guided_batch,
    hint_planes,
    model_position,
    rgb_hint_ab,
)
from chromaflow.serving.guided_request import (
    AB_LIMIT,
    int_option,
    json_body,
    number,
    parse_global,
    parse_hints,
    parse_point,
    type_request,
)
from chromaflow.serving.isolation import guarded, run_isolated
from chromaflow.serving.request import (
    JSON_CONTENT_TYPE,
    DecodedImage,
    Request,
    RequestError,
    decode_image,
    parse_options,
)
from chromaflow.serving.response import Response, encode_image
from chromaflow.serving.service import ModelService, read_archive_meta

log = logging.getLogger(__name__)

__all__ = [
    "ENDPOINTS",
    "GuidedConfig",
    "GuidedInput",
    "GuidedResult",
    "GuidedService",
    "Hint",
    "distribution_at",
    "endpoint_for",
    "guided_batch",
    "hint_planes",
    "model_position",
    "palette_at",
    "rgb_hint_ab",
]


def endpoint_for(model_name: str | None) -> str:
    """The endpoint a TorchServe model name selects: an exact name of :data:`ENDPOINTS`, or a name ending in
    ``-<endpoint>`` / ``_<endpoint>`` (``kodak-palette``); anything else is ``colorize_guided``."""
    name = (model_name or "").lower()
    for e in ENDPOINTS:
        if name == e or name.endswith((f"-{e}", f"_{e}")):
            return e
    return "colorize_guided"


# --------------------------------------------------------------------------------------------- maths


def palette_at(
    probs: torch.Tensor, lum: float, k: int = PALETTE_K, temperature: float = PALETTE_TEMPERATURE
) -> list[dict[str, Any]]:
    """Suggested colours from ``probs (Q,)``: ``[{a, b, weight, rgb: [r, g, b] 0..255 at lightness lum, in_gamut}]``."""
    ab, weights = suggest_palette(probs.cpu(), k=k, temperature=temperature)
    lab = torch.cat([torch.full((len(ab), 1), float(lum), dtype=torch.float64), ab.double()], 1).T[:, :, None]
    raw = color.lab_to_rgb(lab, clip=False)[:, :, 0]  # (3, k)
    in_gamut = ((raw >= -GAMUT_EPS) & (raw <= 1 + GAMUT_EPS)).all(0)
    rgb = (raw.clamp(0, 1) * 255).round().to(torch.int64).T
    return [
        {"a": float(a), "b": float(b), "weight": float(wt), "rgb": [int(c) for c in px], "in_gamut": bool(g)}
        for (a, b), wt, px, g in zip(ab.tolist(), weights.tolist(), rgb.tolist(), in_gamut.tolist(), strict=True)
    ]


# --------------------------------------------------------------------------------------------- service


def _json_response(doc: Mapping[str, Any], status: int = 200) -> Response:
    return Response(status, "application/json", json.dumps(doc, allow_nan=False).encode("utf-8"))


def _png_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class GuidedService(ModelService):
    """The guided model behind ``handle(requests) -> responses`` for one endpoint of :data:`ENDPOINTS`."""

    config_type = GuidedConfig
    architecture = "siggraph17"

    def __init__(
        self,
        model: nn.Module,
        config: GuidedConfig | None = None,
        meta: Mapping[str, Any] | None = None,
        endpoint: str = "colorize_guided",
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"GuidedService: endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
        super().__init__(model, config, meta)
        self.endpoint = endpoint

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike,
        config: GuidedConfig | Mapping[str, Any] | None = None,
        *,
        endpoint: str | None = None,
        expected_sha256: str | None = None,
        device: torch.device | str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> GuidedService:
        """Load a ``save_weights`` file of a ``siggraph17`` model (strict; hash-checked when given)."""
        config = cls.coerce_config(config)
        model = cls.load_model(weights, expected_sha256, device)
        if endpoint is None:
            endpoint = "colorize_guided" if config.endpoint == "auto" else config.endpoint
        return cls(model, config, meta, endpoint)

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike,
        config: GuidedConfig | Mapping[str, Any] | None = None,
        *,
        model_name: str | None = None,
        device: torch.device | str | None = None,
    ) -> GuidedService:
        """Load from an unpacked archive; the endpoint comes from ``config.endpoint`` or else ``model_name``."""
        meta = read_archive_meta(model_dir, cls.__name__)
        config = cls.coerce_config(config)
        endpoint = endpoint_for(model_name) if config.endpoint == "auto" else config.endpoint
        return cls.from_weights(
            Path(model_dir) / meta["weights"],
            config,
            endpoint=endpoint,
            expected_sha256=meta["sha256"],
            device=device,
            meta=meta,
        )

    @property
    def supports_global(self) -> bool:
        return getattr(self.model, "global_branch", None) is not None

    def handle(self, requests: Sequence[Any]) -> list[Response]:
        """Validate every request, run the valid ones in one forward pass, encode every answer. Each request is
        parsed and answered under its own guard (:mod:`~chromaflow.serving.isolation`): a bad one gets its 4xx
        JSON, a server fault on one its 500 JSON; neither touches the others in the batch."""
        responses: list[Response | None] = [None] * len(requests)
        jobs: list[tuple[int, dict[str, Any], DecodedImage, GuidedInput]] = []
        for i, req in enumerate(requests):
            what = f"{self.endpoint} request {i}"
            if self.endpoint == "gamut":
                answer, err = guarded(what, self._gamut, req)
                responses[i] = answer if err is None else err
                continue
            parsed, err = guarded(what, self._parse, req)
            if err is not None:
                responses[i] = err
            else:
                jobs.append((i, *parsed))  # type: ignore[arg-type]

        def compute(batch: Sequence[tuple[int, dict[str, Any], DecodedImage, GuidedInput]]) -> list[GuidedResult]:
            return guided_batch(self.model, [j[3] for j in batch], size=self.config.size, patch=self.config.hint_patch)

        for (i, body, image, item), res in zip(
            jobs, run_isolated(f"{self.endpoint} batch", compute, jobs), strict=True
        ):
            if isinstance(res, Response):
                responses[i] = res
                continue
            answer, err = guarded(f"{self.endpoint} request {i} (answer)", self._answer, body, image, item, res)
            responses[i] = answer if err is None else err
        return responses  # type: ignore[return-value]

    # -- per endpoint

    def _parse(self, req: Any) -> tuple[dict[str, Any], DecodedImage, GuidedInput]:
        body = json_body(req)
        if self.endpoint == "colorize_guided":
            parse_options(type_request(body))  # bad options fail before any work
        image = decode_image(Request(body=body, content_type=JSON_CONTENT_TYPE), max_pixels=self.config.max_pixels)
        hw = image.size
        hints = parse_hints(body.get("hints"), hw, self.config.max_hints)
        glob = parse_global(body.get("global"), self.supports_global)
        point = None
        if self.endpoint == "palette" or body.get("point") is not None:
            if body.get("point") is None:
                raise RequestError(
                    400, "bad_point", "the palette endpoint needs 'point': {x, y} in pixels of the image"
                )
            point = parse_point(body.get("point"), hw)
        int_option(body, "k", self.config.palette_k, 1, Q)
        return body, image, GuidedInput(rgb=image.rgb, hints=hints, global_hint=glob, point=point)

    def _palette_doc(self, body: Mapping[str, Any], item: GuidedInput, res: GuidedResult) -> dict[str, Any]:
        k = int_option(body, "k", self.config.palette_k, 1, Q)
        x, y = item.point  # type: ignore[misc]
        return {
            "point": {"x": x, "y": y},
            "L": res.l_point,
            "colors": palette_at(res.probs, res.l_point, k, self.config.palette_temperature),  # type: ignore[arg-type]
        }

    def _answer(self, body: dict[str, Any], image: DecodedImage, item: GuidedInput, res: GuidedResult) -> Response:
        meta = {"model": self.model_info, "hints": res.hints}
        if self.endpoint == "palette":
            doc = {**self._palette_doc(body, item, res), **meta}
            if body.get("with_image"):
                data = encode_image(res.rgb, "png", image.alpha)
                doc |= {
                    "image": _png_b64(data),
                    "content_type": "image/png",
                    "width": image.size[1],
                    "height": image.size[0],
                }
            return _json_response(doc)
        opts = parse_options(type_request(body))
        data = encode_image(res.rgb, opts.output, image.alpha if opts.output == "png" else None)
        ctype = f"image/{opts.output}"
        if opts.envelope != "json":
            return Response(200, ctype, data)
        doc = {"image": _png_b64(data), "content_type": ctype, "width": image.size[1], "height": image.size[0], **meta}
        if item.point is not None:
            doc["palette"] = self._palette_doc(body, item, res)
        return _json_response(doc)

    def _gamut(self, req: Any) -> Response:
        body = json_body(req)
        fmt = str(body.get("format") or "json").lower()
        if fmt not in ("json", "png"):
            raise RequestError(400, "bad_option", f"option format: {fmt!r} is not one of json, png")
        if body.get("L") is not None:
            lum = number(body["L"], "L", "bad_option")
            if not 0 <= lum <= 100:
                raise RequestError(400, "bad_option", f"L must be in [0, 100], got {lum:g}")
        elif body.get("image") is not None:
            image = decode_image(Request(body=body, content_type=JSON_CONTENT_TYPE), max_pixels=self.config.max_pixels)
            x, y = parse_point(body.get("point"), image.size)
            px = image.rgb[:, int(y), int(x)].float()[:, None, None] / 255.0
            lum = float(color.rgb_to_lab(px)[0, 0, 0])
        else:
            raise RequestError(400, "bad_option", "the gamut endpoint needs 'L' (0..100) or 'image' with 'point'")
        res = int_option(body, "resolution", self.config.swatch_resolution, 2, 1024)
        rgb, in_gamut = ab_swatch(lum, resolution=res, ab_max=AB_LIMIT)
        data = encode_image(rgb, "png", in_gamut.to(torch.uint8) * 255)
        if fmt == "png":
            return Response(200, "image/png", data)
        return _json_response(
            {
                "L": lum,
                "resolution": res,
                "ab_max": AB_LIMIT,
                "axes": "column c: a = -ab_max + c * 2 * ab_max / (resolution - 1); row r: b = ab_max - r * (same step)",
                "image": _png_b64(data),
                "content_type": "image/png",
                "in_gamut_fraction": float(in_gamut.float().mean()),
            }
        )
