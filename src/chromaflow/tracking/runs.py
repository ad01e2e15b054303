"""Open MLflow runs with lineage tags; log params, metrics and artifacts (no-ops outside a run).

    with open_run("colorization", run_name="w16", params=vars(args), data="runs/demo/prepared") as run:
        log_metrics({"loss": 1.23}, step=10)
        log_artifact("runs/demo/train/metrics.json")

MLflow is imported lazily so importing ``chromaflow.tracking`` stays cheap. :data:`MLFLOW` bundles these functions
as the run logger the entry points install for the engine and the transfer step (``chromaflow.runlog``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from chromaflow.tracking.lineage import lineage_tags
from chromaflow.tracking.uri import artifact_location, tracking_uri

log = logging.getLogger(__name__)

MAX_PARAM_LEN = 6000  # MLflow's limit on a param value's length


def configure(uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at :func:`tracking_uri` ``(uri)``; return the resolved URI."""
    import mlflow

    resolved = tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


def ensure_experiment(name: str, uri: str) -> str:
    """Experiment id for ``name``, creating it (artifacts beside the embedded store when local)."""
    import mlflow

    if not name or not isinstance(name, str):
        raise ValueError(f"experiment name must be a non-empty string, got {name!r}")
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"experiment {name!r} is deleted in {uri}; restore it or choose another name")
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_location(uri))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def open_run(
    experiment: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
    *,
    data: str | os.PathLike | list[str | os.PathLike] | None = None,
    kfp_run_id: str | None = None,
) -> Iterator[Any]:
    """Start an MLflow run in ``experiment`` with lineage tags, log ``params``, yield the run, end it.

    Lineage: ``chromaflow.git_commit``/``git_dirty``, ``chromaflow.data_hash`` (of ``data``),
    ``chromaflow.params_hash`` (of ``params``), ``chromaflow.pipeline_run_id``. A run already active
    becomes the parent (nested run). The run ends FAILED when the block raises.
    """
    import mlflow

    resolved = configure(uri)
    exp_id = ensure_experiment(experiment, resolved)
    all_tags = lineage_tags(params, data, kfp_run_id)
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    nested = mlflow.active_run() is not None
    run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags, nested=nested)
    log.info("mlflow run %s (%s) in %r at %s", run.info.run_id, run_name or "-", experiment, resolved)
    try:
        if params:
            log_params(params)
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def _active() -> bool:
    import sys

    mlflow = sys.modules.get("mlflow")  # never import mlflow just to find that no run is open
    return mlflow is not None and mlflow.active_run() is not None


def log_params(d: Mapping[str, Any]) -> None:
    """Log ``d`` (nested dicts flattened with dots; values as strings, cut to MLflow's limit). No-op without a run."""
    if not _active():
        return
    import mlflow

    flat = {k: str(v)[:MAX_PARAM_LEN] for k, v in _flatten(d).items()}
    mlflow.log_params(flat)


def log_metrics(d: Mapping[str, Any], step: int | None = None) -> None:
    """Log finite numeric values of ``d`` at ``step`` (others skipped with a debug line). No-op without a run."""
    if not _active():
        return
    import mlflow

    clean: dict[str, float] = {}
    for k, v in _flatten(d).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            log.debug("log_metrics: skipping non-numeric %s=%r", k, v)
            continue
        if math.isfinite(f):
            clean[k] = f
        else:
            log.warning("log_metrics: skipping non-finite %s=%r", k, v)
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifact(path: str | os.PathLike, artifact_path: str | None = None) -> None:
    """Log a file or a folder as run artifact(s). No-op without a run; ``FileNotFoundError`` for a missing path."""
    if not _active():
        return
    import mlflow

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"log_artifact: {p} does not exist")
    if p.is_dir():
        mlflow.log_artifacts(str(p), artifact_path=artifact_path)
    else:
        mlflow.log_artifact(str(p), artifact_path=artifact_path)


class MlflowRunLogger:
    """The :class:`chromaflow.runlog.RunLogger` of MLflow: this module's functions (install it with
    ``chromaflow.runlog.using(MLFLOW)``)."""

    open_run = staticmethod(open_run)
    log_params = staticmethod(log_params)
    log_metrics = staticmethod(log_metrics)
    log_artifact = staticmethod(log_artifact)


MLFLOW = MlflowRunLogger()
