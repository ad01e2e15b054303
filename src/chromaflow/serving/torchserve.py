"""Glue between TorchServe 0.12's batch format and :mod:`chromaflow.serving` (no ``ts`` import needed).

TorchServe hands a handler ``data``: one dict per request mapping parameter name -> value. The raw
body is the parameter ``body`` (multipart form fields keep their names: ``data``, ``file``, ``image``);
query-string parameters arrive as parameters too. Per-parameter content types and the request
headers come from ``context.get_all_request_header(idx)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from chromaflow.serving.isolation import guarded, run_isolated
from chromaflow.serving.request import Request
from chromaflow.serving.response import Response
from chromaflow.serving.service import pick_device

log = logging.getLogger(__name__)

BODY_KEYS = ("body", "data", "image", "file")  # where the image may be, in this order


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def request_from_torchserve(item: Mapping[str, Any] | None, headers: Mapping[str, Any] | None) -> Request:
    """One TorchServe request (``data[idx]``, ``context.get_all_request_header(idx)``) -> :class:`Request`."""
    item = dict(item or {})
    headers = dict(headers or {})
    key = next((k for k in BODY_KEYS if k in item), None)
    body = item.pop(key) if key else None
    ctype = None
    if key is not None:
        per_param = headers.get(key)
        if isinstance(per_param, Mapping):
            ctype = per_param.get("content-type") or None
    plain_headers = {k: _text(v) for k, v in headers.items() if not isinstance(v, Mapping)}
    if ctype is None:
        ctype = next((v for k, v in plain_headers.items() if k.lower() == "content-type"), None)
    params = {k: _text(v) for k, v in item.items() if isinstance(v, str | bytes | bytearray | int | float)}
    files = {k: bytes(v) for k, v in item.items() if isinstance(v, bytes | bytearray)}
    return Request(body=body, content_type=ctype, params=params, headers=plain_headers, files=files)


def handle_torchserve(service: Any, data: Sequence[Mapping[str, Any]] | None, context: Any) -> list[bytes]:
    """Run ``service.handle`` on a TorchServe batch; set each item's status and content type on ``context``.

    Every item answers on its own: an item TorchServe hands over malformed gets a 500 JSON, and should
    ``service.handle`` itself raise, the batch is answered one request at a time
    (:func:`~chromaflow.serving.isolation.run_isolated`), so the exception stays with the request that causes it.
    """
    data = list(data or [])
    responses: list[Response | None] = [None] * len(data)
    requests: list[tuple[int, Request]] = []
    for i, item in enumerate(data):
        req, err = guarded(
            f"item {i}", lambda i, item: request_from_torchserve(item, context.get_all_request_header(i)), i, item
        )
        if err is not None:
            responses[i] = err
        else:
            requests.append((i, req))  # type: ignore[arg-type]
    answers = run_isolated("handler", lambda batch: service.handle([r for _, r in batch]), requests)
    for (i, _), r in zip(requests, answers, strict=True):
        responses[i] = r
    for i, r in enumerate(responses):
        context.set_response_status(code=r.status, phrase=r.reason, idx=i)
        context.set_response_content_type(i, r.content_type)
    return [r.body for r in responses]


def limit_worker_memory(limit_mb: int) -> None:
    """Cap this process's data memory (``RLIMIT_DATA``: heap and private mappings, what tensors use) at
    ``limit_mb`` MiB. Past it an allocation fails inside one request, which then gets a 500 JSON (the batch is
    retried one request at a time, :func:`~chromaflow.serving.isolation.run_isolated`) instead of the machine
    swapping or the kernel killing the worker."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = limit_mb << 20
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    log.info("worker data memory limited to %d MiB", soft >> 20)


class TorchServeHandler:
    """Base of the handler files in ``serving/``: each defines one subclass naming its ``service_class``.

    ``initialize(context)`` builds ``service_class.from_model_dir`` from the unpacked archive (``model_dir``), the
    ``handler:`` section of its model-config.yaml and the worker's device, then applies the config's
    ``max_memory_mb`` (:func:`limit_worker_memory`); ``handle(data, context)`` answers a
    batch through :func:`handle_torchserve`. (TorchServe requires exactly one class *defined* in a handler file;
    imported ones, like this base, do not count.)
    """

    service_class: ClassVar[type]

    def __init__(self) -> None:
        self.service: Any = None
        self.initialized = False

    def initialize(self, context: Any) -> None:
        props = context.system_properties
        config = (context.model_yaml_config or {}).get("handler", {})
        self.service = self.load_service(props["model_dir"], config, pick_device(index=props.get("gpu_id")), context)
        limit_mb = getattr(self.service.config, "max_memory_mb", 0)
        if limit_mb > 0:
            limit_worker_memory(limit_mb)
        self.initialized = True

    def load_service(self, model_dir: str, config: Mapping[str, Any], device: torch.device, context: Any) -> Any:
        """The service of the unpacked archive at ``model_dir`` (subclasses may read more of ``context``)."""
        return self.service_class.from_model_dir(model_dir, config, device=device)

    def handle(self, data: Sequence[Mapping[str, Any]] | None, context: Any) -> list[bytes]:
        return handle_torchserve(self.service, data, context)
