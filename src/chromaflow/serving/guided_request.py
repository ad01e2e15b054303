"""Request parsing of the user-guided endpoints: hints, point, global hints and options of a JSON body, each
refused with a :class:`~chromaflow.serving.request.RequestError` (400 / 415) naming the field and the reason.
The mapping rules of hints are those of :mod:`chromaflow.models.guided`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from chromaflow.color.constants import AB_NORM, Q
from chromaflow.models.guided import Hint
from chromaflow.serving.request import JSON_CONTENT_TYPE, Request, RequestError, json_object, shown

AB_LIMIT = AB_NORM  # accepted |a|, |b| of an ab hint (the network's tanh output range times ab_norm)
_HINT_KEYS_RGB = frozenset({"x", "y", "r", "g", "b"})
_HINT_KEYS_AB = frozenset({"x", "y", "a", "b"})


def number(value: Any, what: str, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, kind, f"{what}: {value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise RequestError(400, kind, f"{what}: {value!r} is not a finite number")
    return v


def _inside(x: float, y: float, hw: tuple[int, int], what: str, kind: str) -> None:
    h, w = hw
    if not (0 <= x < w and 0 <= y < h):
        raise RequestError(
            400, kind, f"{what} at (x={x:g}, y={y:g}) is outside the {w}x{h} image (0 <= x < {w}, 0 <= y < {h})"
        )


def parse_hints(raw: Any, hw: tuple[int, int], max_hints: int) -> list[Hint]:
    """Validate the ``hints`` field (``None`` -> no hints) against an image of size ``hw = (H, W)``.

    Raises :class:`RequestError` 400: ``bad_hint`` (shape, keys, non-finite x/y), ``too_many_hints``,
    ``hint_outside_image``, ``bad_color`` (r/g/b outside [0, 255], a/b outside [-110, 110], NaN).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RequestError(400, "bad_hint", f"'hints' must be a list of objects, got {type(raw).__name__}")
    if len(raw) > max_hints:
        raise RequestError(400, "too_many_hints", f"{len(raw)} hints; at most {max_hints} are accepted")
    hints = []
    for i, h in enumerate(raw):
        if not isinstance(h, Mapping):
            raise RequestError(400, "bad_hint", f"hint {i}: must be an object {{x, y, r, g, b}} or {{x, y, a, b}}")
        keys = set(h)
        if keys not in (_HINT_KEYS_RGB, _HINT_KEYS_AB):
            raise RequestError(
                400, "bad_hint", f"hint {i}: keys {sorted(keys)}; expected exactly x, y, r, g, b or x, y, a, b"
            )
        x = number(h["x"], f"hint {i}: x", "bad_hint")
        y = number(h["y"], f"hint {i}: y", "bad_hint")
        _inside(x, y, hw, f"hint {i}", "hint_outside_image")
        if keys == _HINT_KEYS_AB:
            ab = tuple(number(h[k], f"hint {i}: {k}", "bad_color") for k in ("a", "b"))
            if any(abs(v) > AB_LIMIT for v in ab):
                raise RequestError(
                    400, "bad_color", f"hint {i}: a, b = {ab} must each be in [-{AB_LIMIT:g}, {AB_LIMIT:g}]"
                )
            hints.append(Hint(x, y, ab=ab))
        else:
            rgb = tuple(number(h[k], f"hint {i}: {k}", "bad_color") for k in ("r", "g", "b"))
            if any(not 0 <= v <= 255 for v in rgb):
                raise RequestError(400, "bad_color", f"hint {i}: r, g, b = {rgb} must each be in [0, 255]")
            hints.append(Hint(x, y, rgb=rgb))
    return hints


def parse_point(raw: Any, hw: tuple[int, int], name: str = "point") -> tuple[float, float]:
    """``{x, y}`` inside the image -> ``(x, y)``; 400 ``bad_point`` / ``point_outside_image``."""
    if not isinstance(raw, Mapping) or set(raw) != {"x", "y"}:
        raise RequestError(400, "bad_point", f"'{name}' must be an object {{x, y}} in pixels of the image")
    x, y = (number(raw[k], f"{name}: {k}", "bad_point") for k in ("x", "y"))
    _inside(x, y, hw, name, "point_outside_image")
    return x, y


def parse_global(raw: Any, supported: bool) -> torch.Tensor | None:
    """The ``global`` field ``{histogram: [Q numbers >= 0], saturation: [0, 1]}`` (both optional) ->
    ``(Q + 3,)`` float32 ``[hist * B_hist, B_hist, sat * B_sat, B_sat]``; ``None`` when absent.

    The histogram is normalized to sum 1. 400 ``bad_global`` / ``global_unsupported``.
    """
    if raw is None:
        return None
    if not supported:
        raise RequestError(400, "global_unsupported", "this model was trained without global hints; omit 'global'")
    if not isinstance(raw, Mapping) or not set(raw) <= {"histogram", "saturation"}:
        raise RequestError(400, "bad_global", "'global' must be an object with 'histogram' and/or 'saturation'")
    vec = torch.zeros(Q + 3)
    if raw.get("histogram") is not None:
        hist = raw["histogram"]
        if not isinstance(hist, list) or len(hist) != Q:
            raise RequestError(400, "bad_global", f"global.histogram must be a list of {Q} numbers (one per ab bin)")
        values = torch.tensor([number(v, "global.histogram", "bad_global") for v in hist], dtype=torch.float64)
        if (values < 0).any() or not values.sum() > 0:
            raise RequestError(400, "bad_global", "global.histogram must be >= 0 everywhere with a positive sum")
        vec[:Q] = (values / values.sum()).float()
        vec[Q] = 1.0
    if raw.get("saturation") is not None:
        sat = number(raw["saturation"], "global.saturation", "bad_global")
        if not 0 <= sat <= 1:
            raise RequestError(400, "bad_global", f"global.saturation must be in [0, 1], got {sat:g}")
        vec[Q + 1], vec[Q + 2] = sat, 1.0
    return vec


def int_option(body: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = body.get(name)
    if raw is None:
        return default
    v = number(raw, f"option {name}", "bad_option")
    if v != int(v) or not lo <= v <= hi:
        raise RequestError(400, "bad_option", f"option {name}: {raw!r} must be an integer in [{lo}, {hi}]")
    return int(v)


def json_body(req: Any) -> dict[str, Any]:
    """The request's JSON object (bounded before parsing, :func:`~chromaflow.serving.request.json_object`); 415 for
    a body of another content type, 400 when it does not parse or is not an object."""
    body = req.body
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype and ctype != JSON_CONTENT_TYPE and not isinstance(body, Mapping):
        raise RequestError(415, "unsupported_content_type", f"content type {shown(ctype)}: send application/json")
    return json_object(body)


def type_request(body: Mapping[str, Any]) -> Any:
    """A :class:`~chromaflow.serving.request.Request` over ``body`` for :func:`parse_options`; a guided request
    has no temperature, so ``T`` is refused (400) instead of being silently ignored."""
    if body.get("T") is not None or body.get("temperature") is not None:
        raise RequestError(400, "bad_option", "option T does not apply to the guided model (it regresses ab)")
    return Request(body={k: v for k, v in body.items() if k in ("format", "output")}, content_type=JSON_CONTENT_TYPE)
