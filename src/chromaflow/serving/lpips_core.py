"""LPIPS endpoint core: two images -> their LPIPS distance (and optionally the spatial map as PNG).

Plain functions over :mod:`chromaflow.serving.request` / ``response`` (no server import), hosted by
``serving/lpips_handler.py`` in TorchServe (archive from ``chromaflow export`` of an ``lpips`` / ``lpips_2afc``
weights file).
Request: ``Content-Type: application/json`` (any other content type is a 415) with::

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

from chromaflow.export.handler_settings import ARCHIVE_META, LPIPS_MAX_PIXELS, LPIPS_WEIGHTS_FILE, LpipsConfig
from chromaflow.models import lpips as lpips_net
from chromaflow.serving.isolation import guarded, run_isolated
from chromaflow.serving.request import Request, RequestError, decode_image, json_object, shown
from chromaflow.serving.response import Response
from chromaflow.serving.service import read_archive_meta

log = logging.getLogger(__name__)

RESIZE_RULES = ("to_first", "none")
JSON_CONTENT_TYPE = "application/json"


def _json_body(req: Request) -> dict[str, Any]:
    body = req.body
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype and ctype != JSON_CONTENT_TYPE and not isinstance(body, Mapping):
        raise RequestError(415, "unsupported_content_type", f"content type {shown(ctype)}: send application/json "
                           'with {"image0": base64, "image1": base64}')  # fmt: skip
    return json_object(body, 'the JSON body {"image0": base64, "image1": base64}')


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


def parse_pair(req: Request, *, max_pixels: int = LPIPS_MAX_PIXELS, min_size: int = 1) -> dict[str, Any]:
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
    """``handle(requests) -> responses`` for one loaded :class:`~chromaflow.models.lpips.LPIPS` model.

    Valid requests of one batch that share a size run in one trunk pass; bad ones get 4xx JSON and never
    fail the others.
    """

    def __init__(
        self, model: lpips_net.LPIPS, *, max_pixels: int | None = None,
        config: LpipsConfig | Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        if not isinstance(config, LpipsConfig):
            config = LpipsConfig.from_mapping(config)
        self.config = config
        self.model = model.eval()
        self.max_pixels = int(max_pixels if max_pixels is not None else config.max_pixels)
        self.device = next(model.parameters()).device
        self.meta = dict(meta or {})
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike, config: LpipsConfig | Mapping[str, Any] | None = None,
                       device: str | torch.device = "cpu") -> LpipsService:  # fmt: skip
        """Load an unpacked archive: ``chromaflow_model.json`` names the weights (an ``lpips`` or
        ``lpips_2afc`` ``save_weights`` file) and their
        sha256, which is checked; without it, ``<model_dir>/lpips.safetensors``."""
        from chromaflow.models import sha256_file

        model_dir = Path(model_dir)
        meta = read_archive_meta(model_dir, cls.__name__, required=False)
        weights = model_dir / meta.get("weights", LPIPS_WEIGHTS_FILE)
        if meta.get("sha256") and sha256_file(weights) != meta["sha256"]:
            raise ValueError(
                f"LpipsService: {weights}: sha256 differs from {model_dir / ARCHIVE_META} (corrupt archive)"
            )
        model = lpips_net.load_distance(weights, device=device)
        return cls(model, config=config, meta=meta)

    def compute_batch(self, pairs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The answers for parsed pairs (see the module docstring); pairs of one size share a trunk pass."""
        out: list[dict[str, Any] | None] = [None] * len(pairs)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(pairs):
            groups.setdefault(tuple(p["x0"].shape[1:]), []).append(i)
        for size, idx in groups.items():
            x0 = torch.stack([pairs[i]["x0"] for i in idx]).to(self.device)
            x1 = torch.stack([pairs[i]["x1"] for i in idx]).to(self.device)
            with torch.no_grad():
                terms = self.model.layer_terms(x0, x1)
                dist = self.model.reduce(terms).float().cpu()
                maps = None
                if any(pairs[i]["spatial"] for i in idx):  # as LPIPS.forward(spatial=True): upsample, sum
                    maps = sum(F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in terms)
            for j, i in enumerate(idx):
                p = pairs[i]
                doc = {"distance": float(dist[j]), "net": self.model.net_name, "version": self.model.version,
                       "size": list(size), "resized": bool(p["resized"])}  # fmt: skip
                if p["spatial"]:  # the map's mean only approximates the distance
                    png, vmax = spatial_png(maps[j, 0])
                    doc["spatial_png"], doc["spatial_max"] = base64.b64encode(png).decode("ascii"), vmax
                out[i] = doc
        return out  # type: ignore[return-value]

    def compute(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for one parsed pair."""
        return self.compute_batch([pair])[0]

    def handle(self, requests: Sequence[Request]) -> list[Response]:
        """One answer per request; each parsed under its own guard, the pairs computed under
        :func:`~chromaflow.serving.isolation.run_isolated` (a failing pair never fails the others)."""
        out: list[Response | None] = [None] * len(requests)
        jobs: list[tuple[int, dict[str, Any]]] = []
        min_size = self.model.net.spec.min_size

        def parse(req: Request) -> dict[str, Any]:
            return parse_pair(req, max_pixels=self.max_pixels, min_size=min_size)

        for i, req in enumerate(requests):
            pair, err = guarded(f"lpips request {i}", parse, req)
            if err is not None:
                out[i] = err
            else:
                jobs.append((i, pair))  # type: ignore[arg-type]

        def compute(batch: Sequence[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
            return self.compute_batch([p for _, p in batch])

        for (i, _), doc in zip(jobs, run_isolated("lpips batch", compute, jobs), strict=True):
            if isinstance(doc, Response):
                out[i] = doc
                continue
            answer, err = guarded(f"lpips request {i} (answer)", _json_answer, doc)
            out[i] = answer if err is None else err
        return out  # type: ignore[return-value]


def _json_answer(doc: Mapping[str, Any]) -> Response:
    return Response(200, "application/json", json.dumps(doc, allow_nan=False).encode("utf-8"))
