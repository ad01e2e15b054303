"""Settings dataclasses read from mappings (YAML sections, JSON): the one ``from_mapping``.

>>> from dataclasses import dataclass
>>> @dataclass
... class S:
...     size: int = 8
>>> from_mapping(S, {"size": "16"}, "demo config", lambda s: [] if s.size >= 8 else ["size must be >= 8"])
S(size=16)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], d: Mapping[str, Any] | None, who: str, check: Callable[[T], list[str]]) -> T:
    """``cls(**d)`` with each value converted to the type of its field's default; ``ValueError`` starting with
    ``who`` for unknown keys, a value that does not convert, or the ``problems`` ``check(settings)`` lists."""
    d = dict(d or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{who}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        settings = cls(**{k: type(getattr(cls, k))(v) for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}: a value does not convert to its setting's type ({e})") from None
    problems = check(settings)
    if problems:
        raise ValueError(f"{who}: " + "; ".join(problems))
    return settings
