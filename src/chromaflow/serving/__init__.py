"""Serving logic in plain modules (testable without a server); ``serving/colorize_handler.py`` adapts it to TorchServe.

- :mod:`.request`: :class:`Request`, option parsing and image decoding/validation (4xx :class:`RequestError`)
- :mod:`.response`: :class:`Response`, image / JSON encodings, JSON errors
- :mod:`.service`: :class:`ColorizeService` (model + batch handling), :func:`colorize_batch`
- :mod:`.torchserve`: TorchServe batch format <-> :class:`Request` / :class:`Response`, and the handlers' base
  :class:`TorchServeHandler`

Endpoints added later (the user-guided model) reuse ``request`` and ``response`` as they are.
"""

from chromaflow.serving.request import DecodedImage, Options, Request, RequestError, decode_image, parse_options
from chromaflow.serving.response import Response, encode_image, error_response
from chromaflow.serving.service import ARCHIVE_META, ColorizeService, ServiceConfig, colorize_batch, pick_device
from chromaflow.serving.torchserve import TorchServeHandler, handle_torchserve, request_from_torchserve

__all__ = [
    "ARCHIVE_META",
    "ColorizeService",
    "DecodedImage",
    "Options",
    "Request",
    "RequestError",
    "Response",
    "ServiceConfig",
    "TorchServeHandler",
    "colorize_batch",
    "decode_image",
    "encode_image",
    "error_response",
    "handle_torchserve",
    "parse_options",
    "pick_device",
    "request_from_torchserve",
]
