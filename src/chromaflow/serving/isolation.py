"""Per-request isolation inside a batch: whatever one request does, its neighbours get their own answers.

Every step that touches one request runs under :func:`guarded` (a :class:`RequestError` becomes that request's
4xx JSON, any other exception a logged 500 JSON); the batched computation runs under :func:`run_isolated`,
which falls back to one item at a time when the batch fails, so only the item that fails alone gets a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chromaflow.serving.request import RequestError
from chromaflow.serving.response import Response, error_response, internal_error

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def guarded(what: str, fn: Callable[..., T], *args: Any) -> tuple[T | None, Response | None]:
    """``(fn(*args), None)``, or ``(None, the error response)`` when it raises (``what`` names it in the log)."""
    try:
        return fn(*args), None
    except RequestError as e:
        log.info("%s rejected: %d %s: %s", what, e.status, e.kind, e.message)
        return None, error_response(e)
    except Exception:  # noqa: BLE001 - one request's fault must not reach the others
        log.exception("%s failed", what)
        return None, internal_error()


def run_isolated(what: str, compute: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]) -> list[R | Response]:
    """``compute(items)`` (one result per item); if it raises or miscounts, each item alone, so an item that
    fails on its own gets a 500 JSON :class:`Response` in its place and the others their results."""
    if not items:
        return []
    try:
        out = list(compute(items))
        if len(out) == len(items):
            return out
        log.error("%s: %d results for %d items", what, len(out), len(items))
    except Exception:  # noqa: BLE001
        log.exception(
            "%s: the batch of %d failed%s", what, len(items), "; retrying one by one" if len(items) > 1 else ""
        )
    if len(items) == 1:
        return [internal_error()]
    return [run_isolated(f"{what} (item {i})", compute, [it])[0] for i, it in enumerate(items)]
