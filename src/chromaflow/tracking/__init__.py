"""MLflow tracking for chromaflow: runs with lineage, logged models, registry aliases and promotion gates.

Contract (docs/contracts.md): ``tracking_uri``, ``open_run``, ``log_params``, ``log_metrics``, ``log_artifact``,
``log_model``, ``promote``, ``load_registered``; ``MLFLOW``, the run logger of ``chromaflow.runlog``. MLflow
itself is imported lazily.
"""

from chromaflow.tracking.lineage import data_hash, lineage_tags, params_hash
from chromaflow.tracking.runs import MLFLOW, log_artifact, log_metrics, log_params, open_run
from chromaflow.tracking.uri import tracking_uri

__all__ = [
    "MLFLOW",
    "data_hash",
    "lineage_tags",
    "load_registered",
    "log_artifact",
    "log_metrics",
    "log_model",
    "log_params",
    "open_run",
    "params_hash",
    "promote",
    "tracking_uri",
]


def __getattr__(name: str):
    # registry/promote pull in mlflow and torch: load them only when asked for
    if name in ("log_model", "load_registered"):
        from chromaflow.tracking import registry

        return getattr(registry, name)
    if name == "promote":
        from chromaflow.tracking.promote import promote

        return promote
    raise AttributeError(f"module 'chromaflow.tracking' has no attribute {name!r}")
