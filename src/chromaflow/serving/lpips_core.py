"""LPIPS endpoint core: two images -> their LPIPS distance (and optionally the spatial map as PNG).

Plain functions over :mod:`chromaflow.serving.request` / ``response`` (no server import), hosted by
``serving/lpips_handler.py`` in TorchServe. Request: ``Content-Type: application/json`` with::

    {"image0": "<base64 PNG/JPEG/WebP>", "image1": "<base64>", "spatial": false, "resize": "to_first"}

Size rule: if the two images differ in size, ``image1`` is resized to ``image0``'s size (bilinear,
antialiased) and the answer says ``"resized": true``; ``"resize": "none"`` makes a size mismatch a 400
instead. Both must be at least the backbone's minimum size (alex 31 px, vgg 16, squeeze 17) and at most
``max_pixels``. Answer (200, JSON): ``{"distance": float, "net", "version", "size": [H, W], "resized",
"spatial_png": base64 PNG (viridis, 0 .. "spatial_max"), "spatial_max"}`` (the last two only with
``"spatial": true``). Bad input: JSON ``{"code": 4xx, "error": kind, "message": why}``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from chromaflow.evaluate import lpips as L
from chromaflow.serving.request import Request, RequestError, decode_image
from chromaflow.serving.response import Response, error_response

log = logging.getLogger(__name__)

MAX_PIXELS = 4_000_000  # per image
RESIZE_RULES = ("to_first", "none")
WEIGHTS_FILE = "lpips.safetensors"


def _json_body(req: Request) -> dict[str, Any]:
    body = req.body
    if body is None or (hasattr(body, "__len__") and len(body) == 0):
        raise RequestError(400, "empty_body", 'send a JSON object {"image0": base64, "image1": base64}')
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "bad_json", "the body does not parse as JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "bad_json", "the JSON body must be an object with 'image0' and 'image1'")
    return body


def _flag(body: Mapping[str, Any], req: Request, name: str) -> bool:
    v = body.get(name, req.params.get(name, False))
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise RequestError(400, "bad_option", f"option {name}: {v!r} is not a boolean")


def parse_pair(req: Request, *, max_pixels: int = MAX_PIXELS, min_size: int = 1) -> dict[str, Any]:
    """Validate a request -> ``{"x0", "x1": uint8 (3, H, W) same size, "spatial": bool, "resized": bool}``.

    Raises :class:`RequestError`: 400 (missing image, bad JSON/base64, size mismatch with resize=none,
    too small, bad option), 413 (too many pixels), 415 (unsupported format or mode).
    """
    body = _json_body(req)
    for key in ("image0", "image1"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise RequestError(400, "missing_image", f"the JSON field {key!r} (a base64 image) is missing or empty")
    imgs = []
    for key in ("image0", "image1"):
        try:
            imgs.append(decode_image(Request(body={"image": body[key]}), max_pixels=max_pixels).rgb)
        except RequestError as e:
            raise RequestError(e.status, e.kind, f"{key}: {e.message}") from None
    rule = str(body.get("resize", req.params.get("resize", "to_first")))
    if rule not in RESIZE_RULES:
        raise RequestError(400, "bad_option", f"option resize: {rule!r} is not one of {RESIZE_RULES}")
    x0, x1 = imgs
    resized = x0.shape != x1.shape
    if resized:
        if rule == "none":
            raise RequestError(400, "size_mismatch", f"image0 is {tuple(x0.shape[1:])} and image1 {tuple(x1.shape[1:])} (H, W); "
                               "send equal sizes or resize='to_first'")  # fmt: skip
        x1 = F.interpolate(x1[None].float(), size=x0.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        x1 = x1[0].round().clamp(0, 255).to(torch.uint8)
    if min(x0.shape[1:]) < min_size:
        raise RequestError(
            400, "too_small", f"images must be at least {min_size} px on each side, got {tuple(x0.shape[1:])}"
        )
    return {"x0": x0, "x1": x1, "spatial": _flag(body, req, "spatial"), "resized": resized}


def spatial_png(m: torch.Tensor) -> tuple[bytes, float]:
    """A map ``(H, W)`` -> (PNG bytes, colour-scale maximum)."""
    from PIL import Image

    from chromaflow.evaluate.lpips_eval import map_to_rgb

    vmax = max(float(m.max()), 1e-12)
    buf = io.BytesIO()
    Image.fromarray(map_to_rgb(m, vmax)).save(buf, format="PNG")
    return buf.getvalue(), vmax


class LpipsService:
    """``handle(requests) -> responses`` for one loaded :class:`~chromaflow.evaluate.lpips.LPIPS` model."""

    def __init__(self, model: L.LPIPS, *, max_pixels: int = MAX_PIXELS) -> None:
        self.model = model.eval()
        self.max_pixels = max_pixels
        self.device = next(model.parameters()).device

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
                       device: str | torch.device = "cpu") -> LpipsService:  # fmt: skip
        """Load ``<model_dir>/lpips.safetensors`` (written by ``save_lpips``); config key ``max_pixels``."""
        config = dict(config or {})
        model = L.load_lpips(Path(model_dir) / config.get("weights", WEIGHTS_FILE), device=device)
        return cls(model, max_pixels=int(config.get("max_pixels", MAX_PIXELS)))

    def compute(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for a parsed pair (see the module docstring)."""
        x0, x1 = pair["x0"][None].to(self.device), pair["x1"][None].to(self.device)
        with torch.no_grad():
            if pair["spatial"]:
                m = self.model(x0, x1, spatial=True)[0, 0]  # the map's mean only approximates the distance
            dist = float(self.model(x0, x1)[0])
        out = {"distance": dist, "net": self.model.net_name, "version": self.model.version,
               "size": list(pair["x0"].shape[1:]), "resized": bool(pair["resized"])}  # fmt: skip
        if pair["spatial"]:
            png, vmax = spatial_png(m)
            out["spatial_png"], out["spatial_max"] = base64.b64encode(png).decode("ascii"), vmax
        return out

    def handle(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for req in requests:
            try:
                pair = parse_pair(req, max_pixels=self.max_pixels, min_size=self.model.net.spec.min_size)
                body = self.compute(pair)
                out.append(Response(200, "application/json", json.dumps(body).encode("utf-8")))
            except RequestError as e:
                log.info("lpips request rejected: %s %s", e.status, e.message)
                out.append(error_response(e))
        return out
