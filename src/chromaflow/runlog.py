"""Where a step logs its run: the :class:`RunLogger` the engine and the transfer step write to.

Defined below every layer so that ``train`` and ``evaluate`` log without importing ``tracking``; the entry points
above them (``chromaflow.cli``, the pipelines' train step) install ``chromaflow.tracking.MLFLOW`` with
:func:`using`. With nothing installed a run logs nowhere (:class:`NoRunLogger`).

    with runlog.using(MLFLOW):
        fit(task, cfg)  # params, losses and artifacts go to MLflow
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol


class RunLogger(Protocol):
    """A run of an experiment tracker: ``open_run`` (a context), then params, metrics and artifacts; each
    ``log_*`` is a no-op when no run is open."""

    def open_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        data: str | os.PathLike | None = None,
    ) -> contextlib.AbstractContextManager[Any]: ...

    def log_params(self, d: Mapping[str, Any]) -> None: ...

    def log_metrics(self, d: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...


class NoRunLogger:
    """Logs nothing: the default when no entry point installed a tracker."""

    def open_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        data: str | os.PathLike | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def log_params(self, d: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, d: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass


_current: list[RunLogger] = [NoRunLogger()]


def current() -> RunLogger:
    """The installed run logger (:class:`NoRunLogger` when none is)."""
    return _current[-1]


@contextlib.contextmanager
def using(logger: RunLogger) -> Iterator[RunLogger]:
    """Install ``logger`` for the block (nested blocks stack; the previous one is back afterwards)."""
    _current.append(logger)
    try:
        yield logger
    finally:
        _current.pop()
