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
from dataclasses import dataclass
from typing import Any

from torch import nn

from chromaflow.color.constants import LAB_CONTRACT

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, ModelDescription] = {}
_INFRA = {"registry", "weights", "inference", "guided", "translation"}  # modules of this package that define no model

TensorSig = tuple[str, tuple[int, ...]]  # (numpy dtype name, shape with -1 for any size)
IMAGE_SIG: TensorSig = ("uint8", (-1, -1, -1, 3))  # a batch of RGB images, any count and size


@dataclass(frozen=True)
class ModelDescription:
    """Everything the project knows about one registered model (timm's ``pretrained_cfg`` counterpart).

    Every table above the models layer (MLflow kinds and signatures, TorchServe handler, transfer layers, the
    pyfunc) reads this; a new servable model needs only its module to call :func:`register_description`.

    Attributes:
        kind: the MLflow pyfunc kind (``colorization | guided | lpips | representation | translation``).
        predict: THE inference path, ragged batch: ``predict(model, items, **options) -> list`` (one output per
            item, in order; items may differ in size). Every caller (offline ``colorize``, TorchServe, the
            pyfunc, evaluation) goes through it.
        to_output: one ``predict`` output -> the pyfunc's numpy output for that item (e.g. uint8 ``(H, W, 3)``).
        example: ``() -> np.ndarray``, the pyfunc input example (small: stored as JSON).
        signature: ``(input, output)`` :data:`TensorSig` of the pyfunc.
        served_size: side of the square network input it is served with, passed to ``predict`` as ``size=``
            (``None``: the kind has no such setting).
        decode: how class logits become ab when served (``annealed_mean | mean | mode``; ``None``: no decoding).
        feature_layers: the layers ``forward_features`` returns, lowest first (transfer evaluation).
        forward_features: ``(model, rgb (B, 3, H, W) uint8 or [0, 1] float) -> {layer: (B, C, h, w)}``.
        handler: TorchServe handler family (``colorize | guided | lpips | translate``; ``None``: not served).
    """

    kind: str
    predict: Callable[..., list[Any]]
    to_output: Callable[[Any], Any]
    example: Callable[[], Any]
    signature: tuple[TensorSig, TensorSig] = (IMAGE_SIG, IMAGE_SIG)
    served_size: int | None = None
    decode: str | None = None
    feature_layers: tuple[str, ...] = ()
    forward_features: Callable[[nn.Module, Any], dict[str, Any]] | None = None
    handler: str | None = None


def make_contract(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``LAB_CONTRACT`` with ``overrides`` applied; unknown keys are an error (a typo must not pass)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(LAB_CONTRACT))
    if unknown:
        raise ValueError(f"contract: unknown key(s) {unknown}; known keys are {sorted(LAB_CONTRACT)}")
    return {**LAB_CONTRACT, **overrides}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None) -> Any:
    """Register a factory under its function name (or ``name``: ``@register_model(name="lpips")``); the
    wrapped factory attaches ``.config``.

    The factory takes keyword arguments only (its architecture knobs); the wrapper adds a
    ``contract=`` keyword holding overrides of ``LAB_CONTRACT``.
    """
    if fn is None:
        return functools.partial(register_model, name=name)
    name = name or fn.__name__
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


def register_description(name: str, description: ModelDescription) -> ModelDescription:
    """Attach ``description`` to the registered model ``name`` (one line in the model's module)."""
    if name in _DESCRIPTIONS:
        raise ValueError(f"register_description: {name!r} already has a description")
    if not isinstance(description, ModelDescription):
        raise TypeError(f"register_description: {name!r}: expected a ModelDescription, got {type(description)}")
    _DESCRIPTIONS[name] = description
    return description


def describe(name: str) -> ModelDescription:
    """The :class:`ModelDescription` of the registered model ``name``; ``KeyError`` naming the described ones."""
    if name not in _DESCRIPTIONS:
        _ensure_builtin()
    if name not in _DESCRIPTIONS:
        raise KeyError(f"describe: no description for model {name!r}; described: {sorted(_DESCRIPTIONS)}")
    return _DESCRIPTIONS[name]


def described_models() -> dict[str, ModelDescription]:
    """``{name: description}`` of every described model, sorted by name."""
    _ensure_builtin()
    return dict(sorted(_DESCRIPTIONS.items()))


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
