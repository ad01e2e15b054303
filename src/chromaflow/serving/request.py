"""Requests independent of any server: decode and validate an image body and its options.

A server adapter (TorchServe, or any other) turns its request into a :class:`Request`; everything
after that is plain Python that tests call directly. Every rejection is a :class:`RequestError`
carrying the HTTP status and a reason a client can act on; nothing here raises anything else for
bad input.

    >>> req = Request(body=open("data/sample/kodim01.jpg", "rb").read(), content_type="image/jpeg")
    >>> img = decode_image(req, max_pixels=12_000_000)
    >>> img.rgb.shape, img.rgb.dtype          # (3, H, W) uint8
    (torch.Size([3, 512, 768]), torch.uint8)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from chromaflow.data.images import ACCEPTED_FORMATS, ImageRejected, accept_image, open_image

# decodable (PIL name -> MIME): data.images.ACCEPTED_FORMATS, the one accept/convert policy of prepare,
# colorize and the endpoints (CMYK, 16-bit, float, palette converted; alpha kept aside and re-attached to PNG).
# An MPO (a phone camera's multi-picture JPEG) travels as image/jpeg.
IMAGE_FORMATS = {f: "image/jpeg" if f == "MPO" else Image.MIME[f] for f in ACCEPTED_FORMATS}
IMAGE_CONTENT_TYPES = frozenset({*IMAGE_FORMATS.values(), "image/jpg", "application/octet-stream"})
JSON_CONTENT_TYPE = "application/json"
OUTPUT_FORMATS = ("png", "jpeg")
T_RANGE = (0.01, 10.0)  # accepted annealed-mean temperatures (T -> 0: mode, T = 1: mean)
# JSON bodies are measured before they are parsed: deeper nesting or more values than this is 400 too_complex.
# Ours need depth 3 ({"hints": [{...}]}) and ~1,300 values (256 hints, a 313-bin histogram).
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 100_000
MAX_JSON_BYTES = 28 << 20  # a 20 MiB image as base64 plus the fields around it
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a complete JSON string (escapes included)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class RequestError(Exception):
    """A client error: HTTP ``status`` (4xx), a short machine-readable ``kind`` and a human ``message``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.status, "error": self.kind, "message": self.message}


@dataclass
class Request:
    """One request as any server sees it.

    ``body``: raw bytes, a ``dict`` (a JSON body some servers decode for us, with a base64 ``image``),
    a ``str`` or ``None``; ``content_type``: of the body (``None`` when unknown); ``params``: query
    parameters; ``headers``: request headers (looked up case-insensitively); ``files``: the raw bytes of the
    other parameters a server received as bytes (multipart form fields: a second image, e.g. ``style``).
    """

    body: bytes | bytearray | dict | str | None
    content_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((str(v) for k, v in self.headers.items() if k.lower() == name and isinstance(v, str)), None)

    def option(self, name: str, header: str | None = None) -> str | None:
        """A query parameter ``name`` (also read from a JSON body), else the header ``header``."""
        value = self.params.get(name)
        if value is None and isinstance(self.body, dict) and name in self.body and name != "image":
            value = self.body[name]
        if value is None and header is not None:
            value = self.header(header)
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8", "replace")
        return None if value is None else str(value).strip()


@dataclass
class Options:
    """Per-request options. ``T``: temperature (``None``: the model's contract T); ``output``: png|jpeg;
    ``envelope``: ``"json"`` for a JSON answer with a base64 image, ``None`` for the raw image."""

    T: float | None = None
    output: str = "png"
    envelope: str | None = None


@dataclass
class DecodedImage:
    """``rgb``: ``(3, H, W)`` uint8 (a gray input as 3 equal channels); ``alpha``: ``(H, W)`` uint8 or ``None``;
    ``mode`` / ``format``: the PIL mode and format of the input."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    mode: str
    format: str

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])


def shown(value: Any, limit: int = 40) -> str:
    """``repr`` of a client-sent value for an error message, cut to ``limit`` characters (never the whole body)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_shape(data: bytes) -> tuple[int, int]:
    """``(deepest nesting, number of values)`` of JSON text, measured without parsing it.

    Strings are blanked first (so brackets and commas inside them do not count); the depth is the running
    sum of ``[{`` minus ``]}``; the values are the commas and colons plus one. Linear in ``len(data)``, no
    recursion: a body of 100,000 ``[`` costs a few ms.
    """
    bare = _JSON_STRING.sub(b'""', data)
    arr = np.frombuffer(bare, np.uint8)
    step = np.isin(arr, _OPEN).astype(np.int32) - np.isin(arr, _CLOSE).astype(np.int32)
    depth = int(np.cumsum(step).max()) if len(step) else 0
    return depth, bare.count(b",") + bare.count(b":") + 1


def _depth(doc: Any, limit: int) -> int:
    """Nesting depth of an already parsed JSON value, iteratively (stops counting past ``limit``)."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, dict | list):
            d += 1
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def json_object(body: Any, what: str = "the JSON body") -> dict[str, Any]:
    """The JSON object of a request body: bytes / str parsed after :func:`json_shape` bounds it, or a value a
    server parsed already (TorchServe does, unless ``TS_DECODE_INPUT_REQUEST=false``).

    Raises :class:`RequestError` 400: ``empty_body``, ``too_complex`` (nesting over :data:`MAX_JSON_DEPTH`,
    more than :data:`MAX_JSON_VALUES` values), ``bad_json`` (does not parse, not UTF-8, or not an object:
    ``[1]``, ``123``, ``true``); 413 ``too_large`` over :data:`MAX_JSON_BYTES`.
    """
    if body is None or (isinstance(body, bytes | bytearray | str) and len(body) == 0):
        raise RequestError(400, "empty_body", f"the request body is empty: send {what} (an object)")
    if isinstance(body, bytes | bytearray | str):
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
        if len(data) > MAX_JSON_BYTES:
            raise RequestError(413, "too_large", f"{what} is {len(data)} bytes; the limit is {MAX_JSON_BYTES}")
        depth, values = json_shape(data)
        if depth > MAX_JSON_DEPTH or values > MAX_JSON_VALUES:
            raise RequestError(
                400,
                "too_complex",
                f"{what} nests {depth} deep with {values} values; the limits are {MAX_JSON_DEPTH} and {MAX_JSON_VALUES}",
            )
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise RequestError(400, "bad_json", f"{what} does not parse as JSON (UTF-8)") from None
    elif _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise RequestError(400, "too_complex", f"{what} nests deeper than {MAX_JSON_DEPTH}")
    if not isinstance(body, dict):
        raise RequestError(400, "bad_json", f"{what} must be a JSON object, got a {type(body).__name__}")
    return body


def media_type(content_type: str | None) -> str | None:
    """``"image/png; q=1"`` -> ``"image/png"`` (lower case); ``None`` stays ``None``."""
    return content_type.split(";", 1)[0].strip().lower() if content_type else None


def parse_options(req: Request) -> Options:
    """Read ``T`` (query ``T``/``temperature`` or header ``X-Chromaflow-T``), the image format (query ``output``
    or ``format`` = png|jpeg, header ``X-Chromaflow-Output``, or ``Accept: image/jpeg``) and the JSON envelope
    (``?format=json`` or ``Accept: application/json``). Raises :class:`RequestError` (400) on bad values."""
    opts = Options()
    raw_t = req.option("T", "X-Chromaflow-T") or req.option("temperature")
    if raw_t:
        try:
            opts.T = float(raw_t)
        except ValueError:
            raise RequestError(400, "bad_option", f"option T: {shown(raw_t)} is not a number") from None
        lo, hi = T_RANGE
        if not lo <= opts.T <= hi:
            raise RequestError(400, "bad_option", f"option T: {opts.T} is outside [{lo}, {hi}]")
    fmt = (req.option("format") or "").lower()
    out = (req.option("output", "X-Chromaflow-Output") or "").lower()
    accept = (req.header("Accept") or "").lower()
    if fmt == "json" or (not fmt and JSON_CONTENT_TYPE in accept):
        opts.envelope = "json"
    elif fmt:
        out = out or fmt
    if not out and "image/jpeg" in accept and "image/png" not in accept:
        out = "jpeg"
    out = {"jpg": "jpeg"}.get(out, out) or "png"
    if out not in OUTPUT_FORMATS:
        raise RequestError(400, "bad_option", f"option output/format: {shown(out)} is not one of png, jpeg, json")
    opts.output = out
    return opts


def image_bytes(req: Request) -> bytes:
    """The encoded image in ``req``: the raw body, or the base64 ``image`` field of a JSON body.

    Raises :class:`RequestError`: 400 empty body / bad base64, 415 wrong content type.
    """
    ctype = media_type(req.content_type)
    body = req.body
    if ctype is not None and ctype != JSON_CONTENT_TYPE and ctype not in IMAGE_CONTENT_TYPES:
        raise RequestError(
            415,
            "unsupported_content_type",
            f"content type {shown(ctype)} is not accepted; send image/png, image/jpeg or image/webp "
            "(or application/json with a base64 'image' field)",
        )
    if body is None or (isinstance(body, bytes | bytearray | str | dict) and len(body) == 0):
        raise RequestError(400, "empty_body", "the request body is empty: send the image bytes as the body")
    if ctype == JSON_CONTENT_TYPE or not isinstance(body, bytes | bytearray | str):
        return _image_from_json(body)  # a JSON body, or a value a server parsed from one
    if isinstance(body, str):  # a server decoded a text/* body for us; ctype was not an image type
        body = body.encode("utf-8", "surrogateescape")
    return bytes(body)


def _image_from_json(body: Any) -> bytes:
    body = json_object(body)
    if not isinstance(body.get("image"), str) or not body["image"]:
        raise RequestError(400, "bad_json", "a JSON body must be an object with a non-empty base64 'image' field")
    text = body["image"]
    if text.startswith("data:") and "," in text:  # data URL
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "bad_base64", "the JSON field 'image' is not valid base64") from None


def decode_image(req: Request, *, max_pixels: int) -> DecodedImage:
    """Decode and validate the image of ``req`` under the policy of :func:`chromaflow.data.images.accept_image`.

    The pixel count is checked from the header before any pixel is decoded (decompression bombs).
    Raises :class:`RequestError`: 400 empty / not an image / truncated or corrupt, 413 too many pixels,
    415 wrong content type / unsupported format / unsupported mode / NaN pixels.
    """
    data = image_bytes(req)
    try:
        im = open_image(data, max_pixels=max_pixels)
    except Image.DecompressionBombError as e:
        raise RequestError(
            413, "too_many_pixels", f"the image header declares more than {max_pixels} pixels: {e}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RequestError(400, "not_an_image", f"the body ({len(data)} bytes) is not a decodable image") from None
    with im:  # open_image already refused more than max_pixels pixels (413 above)
        w, h = im.size
        if w < 1 or h < 1:
            raise RequestError(400, "not_an_image", f"the image is {w}x{h}: no pixels")
        fmt, mode = im.format, im.mode
        try:
            im, _ = accept_image(im, keep_alpha=True)
        except ImageRejected as e:
            raise RequestError(415, e.kind, e.reason) from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise RequestError(400, "truncated_image", f"the {fmt} image is truncated or corrupt ({e})") from None
        has_alpha = im.mode in ("RGBA", "LA")
        rgba = im.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(rgba)  # (H, W, 3|4) uint8
    rgb = torch.from_numpy(np.ascontiguousarray(arr[..., :3].transpose(2, 0, 1)))
    alpha = torch.from_numpy(arr[..., 3].copy()) if has_alpha else None
    return DecodedImage(rgb=rgb, alpha=alpha, mode=mode, format=fmt)
