"""Training tasks, discovered by module name: ``--task NAME`` imports ``chromaflow.train.tasks.NAME``.

A task module exposes ``add_arguments(parser)`` (its own flags) and ``build(args) -> Task``
(:class:`chromaflow.train.engine.Task`). Adding a method = adding one file here; there is no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available() -> list[str]:
    """Names of the task modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    """Import the task module ``name``; ``ValueError`` naming the known tasks if there is none."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"--task: {name!r} is not a task name; available: {available()}")
    full = f"{__name__}.{name}"
    try:
        mod = importlib.import_module(full)
    except ModuleNotFoundError as e:
        if e.name != full:
            raise  # the task exists but one of its own imports is missing
        raise ValueError(f"--task: no task {name!r}; available: {available()}") from None
    missing = [f for f in ("add_arguments", "build") if not callable(getattr(mod, f, None))]
    if missing:
        raise ValueError(f"--task: module {full} lacks {missing} (a task module needs add_arguments and build)")
    return mod
