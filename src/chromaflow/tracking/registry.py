"""Evaluation metrics of a registered version (the tags ``promote`` compares). Logging and loading MLflow models
from weights is ``chromaflow.export.mlflow_model``."""

from __future__ import annotations

from collections.abc import Mapping

# Versions registered before the pyfunc moved to chromaflow.export carry a copy of the old pyfunc_model.py,
# whose load_context imports load_model_file from here: keep the name so those versions still load.
from chromaflow.models.weights import load_model_file  # noqa: F401
from chromaflow.tracking.promote import EVAL_SET_TAG, METRIC_TAG
from chromaflow.tracking.runs import configure


def set_version_metrics(
    name: str, version: str | int, metrics: Mapping[str, float], eval_set: str, *, uri: str | None = None
) -> None:
    """Record evaluation ``metrics`` measured on ``eval_set`` on an existing version (tags, see ``promote``)."""
    from mlflow import MlflowClient

    resolved = configure(uri)
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    clean = {}
    for k, v in metrics.items():
        try:
            clean[k] = repr(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"set_version_metrics: metric {k!r} must be a number, got {v!r}") from None
    for k, v in clean.items():
        client.set_model_version_tag(name, str(version), METRIC_TAG + k, v)
    client.set_model_version_tag(name, str(version), EVAL_SET_TAG, str(eval_set))
