"""A timm-like model registry: ``@register_model`` factories, ``create_model(name, **kw)``.

Every model built through a registered factory carries ``model.config``::

    {"name": "eccv16", "kwargs": {"width": 0.25, "head": "class"},
     "contract": {**LAB_CONTRACT, **overrides}}

so weights saved with it can be rebuilt and used without guessing (see :mod:`.weights`).

    >>> from chromaflow.models import create_model
    >>> m = create_model("eccv16", width=0.25)
    >>> m.config["contract"]["T"]
    0.38
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from chromaflow.color.constants import LAB_CONTRACT

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INFRA = {"registry", "weights", "inference"}  # modules of this package that define no model


def make_contract(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``LAB_CONTRACT`` with ``overrides`` applied; unknown keys are an error (a typo must not pass)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(LAB_CONTRACT))
    if unknown:
        raise ValueError(f"contract: unknown key(s) {unknown}; known keys are {sorted(LAB_CONTRACT)}")
    return {**LAB_CONTRACT, **overrides}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name; the wrapped factory attaches ``.config``.

    The factory takes keyword arguments only (its architecture knobs); the wrapper adds a
    ``contract=`` keyword holding overrides of ``LAB_CONTRACT``.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def factory(*args: Any, contract: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}: {e}; accepted arguments: {list(sig.parameters)}") from None
        bound.apply_defaults()
        model = fn(*bound.args, **bound.kwargs)
        model.config = {"name": name, "kwargs": dict(bound.arguments), "contract": make_contract(contract)}
        return model

    _MODELS[name] = factory
    return factory


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (and optional ``contract=`` overrides)."""
    if name not in _MODELS:
        _ensure_builtin()
    if name not in _MODELS:
        raise KeyError(f"create_model: unknown model {name!r}; registered: {list_models()}")
    return _MODELS[name](**kwargs)


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    _ensure_builtin()
    return sorted(_MODELS)


def _ensure_builtin() -> None:
    """Import every model module of ``chromaflow.models`` (each registers its factories); no list to edit."""
    import chromaflow.models as pkg

    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name not in _INFRA and not m.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{m.name}")
