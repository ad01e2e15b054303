"""Request parsing of the ``translate`` endpoint: the input image, how many samples, and how their codes are
chosen, each refused with a :class:`~chromaflow.serving.request.RequestError` (400 / 413 / 415) naming the field.

Three shapes carry the same fields (``serving/README.md``):

- JSON (``application/json``): ``{"image": base64, "n": 4, "seed": 7, "z": [[...nz numbers] x n],
  "style": base64, "input_kind": "edges" | "gray", "polarity": "auto" | "bright" | "dark", "format": "json" |
  "png" | "jpeg", "output": "png" | "jpeg"}``; only ``image`` is required.
- multipart form: the image in the part ``image`` (or ``file`` / ``data``), the style photo in the part
  ``style``, the other fields as text parts (``z`` as JSON text).
- the raw image as the body (``image/png`` ...), the fields as query parameters (``?n=4&seed=7``) or headers
  (:func:`header_name`: ``X-Chromaflow-N: 4``, ``X-Chromaflow-Seed: 7``; TorchServe drops a POST's query).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from chromaflow.export.handler_settings import TranslateConfig
from chromaflow.models.translation import INPUT_KINDS, MAX_SEED, POLARITIES, TranslateInput
from chromaflow.serving.guided_request import int_option, number
from chromaflow.serving.request import (
    JSON_CONTENT_TYPE,
    OUTPUT_FORMATS,
    DecodedImage,
    Request,
    RequestError,
    decode_image,
    json_object,
    media_type,
    shown,
)

FIELDS = ("n", "seed", "z", "input_kind", "polarity", "format", "output")  # besides image and style
MAX_FIELD_TEXT = 64 << 10  # bytes of a text field (z of 16 x 256 numbers fits)
ANSWER_FORMATS = ("json", *OUTPUT_FORMATS)


@dataclass
class TranslateRequest:
    """A parsed request: the decoded input (for its size and alpha), the model item, and the answer's shape:
    ``envelope`` ``json`` (every sample base64 in one JSON) or ``raw`` (one image, ``n == 1``), each sample
    encoded as ``output`` (png | jpeg)."""

    image: DecodedImage
    item: TranslateInput
    envelope: str
    output: str


def _text_value(raw: Any) -> Any:
    """A form / query field: its JSON value when it parses as JSON (``"4"`` -> 4, ``"[[0, 1]]"``), else the text."""
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", "replace")
    text = str(raw).strip()
    if len(text) > MAX_FIELD_TEXT:
        raise RequestError(413, "too_large", f"a form field is {len(text)} bytes; the limit is {MAX_FIELD_TEXT}")
    try:
        return json.loads(text)
    except ValueError:
        return text


def header_name(field: str) -> str:
    """The header that carries ``field`` with a raw image body (TorchServe 0.12 does not pass a POST's query
    string to handlers): ``seed`` -> ``X-Chromaflow-Seed``, ``input_kind`` -> ``X-Chromaflow-Input-Kind``."""
    return "X-Chromaflow-" + "-".join(part.capitalize() for part in field.split("_"))


def _choice(fields: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = fields.get(name)
    if raw is None:
        return default
    value = str(raw).strip().lower()
    value = {"jpg": "jpeg"}.get(value, value)
    if value not in choices:
        raise RequestError(400, "bad_option", f"option {name}: {shown(raw)} is not one of {', '.join(choices)}")
    return value


def parse_z(raw: Any, n: int, nz: int) -> torch.Tensor:
    """``z``: ``n`` lists of ``nz`` finite numbers -> ``(n, nz)`` float32; 400 ``bad_z`` naming the row."""
    if not isinstance(raw, list) or len(raw) != n:
        raise RequestError(400, "bad_z", f"'z' must be a list of n = {n} codes, each a list of {nz} numbers")
    for i, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != nz:
            raise RequestError(400, "bad_z", f"z[{i}] must be a list of {nz} numbers (the model's |z|)")
    return torch.tensor(
        [[number(v, f"z[{i}]", "bad_z") for v in row] for i, row in enumerate(raw)], dtype=torch.float32
    )


def _style(style: Any, config: TranslateConfig) -> torch.Tensor | None:
    if style is None:
        return None
    if isinstance(style, str):  # base64 in JSON (or a data URL)
        doc = {"image": style}
        req = Request(body=doc, content_type=JSON_CONTENT_TYPE)
    else:
        req = Request(body=bytes(style), content_type=None)
    try:
        return decode_image(req, max_pixels=config.max_pixels).rgb
    except RequestError as e:
        raise RequestError(e.status, e.kind, f"style: {e.message}") from None


def parse_translate(req: Request, config: TranslateConfig, nz: int, has_encoder: bool) -> TranslateRequest:
    """``req`` (JSON, multipart or a raw image with query fields) -> a :class:`TranslateRequest`, or a
    :class:`RequestError`: the image's own (``decode_image``), 400 ``bad_option`` (n outside
    [1, ``config.max_samples``], seed outside [0, 2**53 - 1], unknown choices, raw format with n > 1), ``bad_z``,
    ``style_unsupported`` (a model without an encoder), ``conflicting_options`` (z with style or seed)."""
    if req.body is not None and (
        media_type(req.content_type) == JSON_CONTENT_TYPE or not isinstance(req.body, bytes | bytearray | str)
    ):
        body = json_object(req.body)
        fields: dict[str, Any] = {k: body.get(k) for k in FIELDS}
        style: Any = body.get("style")
        image_req = Request(body=body, content_type=JSON_CONTENT_TYPE)
    else:
        raw = {k: req.params[k] if k in req.params else req.header(header_name(k)) for k in FIELDS}
        fields = {k: _text_value(v) for k, v in raw.items() if v is not None}
        style = req.files.get("style")
        if style is None and "style" in req.params:
            style = _text_value(req.params["style"])
            style = style if isinstance(style, str) else None
        image_req = req
    n = int_option(fields, "n", 1, 1, config.max_samples)
    seed = None if fields.get("seed") is None else int_option(fields, "seed", 0, 0, MAX_SEED)
    fmt = _choice(fields, "format", ANSWER_FORMATS, "json")
    output = _choice(fields, "output", OUTPUT_FORMATS, fmt if fmt != "json" else "png")
    if fmt != "json" and n != 1:
        raise RequestError(400, "bad_option", f"format {fmt} answers one image; n = {n} needs format json")
    z = None if fields.get("z") is None else parse_z(fields["z"], n, nz)
    if z is not None and (style is not None or seed is not None):
        raise RequestError(400, "conflicting_options", "'z' gives every code: send it without 'style' and 'seed'")
    if style is not None and not has_encoder:
        raise RequestError(400, "style_unsupported", "this model has no encoder E: a style image cannot be encoded")
    item = TranslateInput(
        image=torch.empty(0),  # set below, once the image is decoded
        n=n,
        seed=seed,
        z=z,
        style=None,
        input_kind=_choice(fields, "input_kind", INPUT_KINDS, "edges"),
        polarity=_choice(fields, "polarity", POLARITIES, "auto"),
    )
    image = decode_image(image_req, max_pixels=config.max_pixels)
    item.image, item.style = image.rgb, _style(style, config)
    return TranslateRequest(image=image, item=item, envelope="json" if fmt == "json" else "raw", output=output)
