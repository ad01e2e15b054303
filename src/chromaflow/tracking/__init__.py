"""MLflow tracking for chromaflow: runs with lineage, version metrics, promotion gates and the promotion decision.

Contract (docs/contracts.md): ``tracking_uri``, ``open_run``, ``log_params``, ``log_metrics``, ``log_artifact``,
``promote``; ``MLFLOW``, the run logger of ``chromaflow.runlog``. MLflow itself is imported lazily. Logging and
loading models: ``chromaflow.export.mlflow_model``.
"""

from chromaflow.tracking.lineage import data_hash, lineage_tags, params_hash
from chromaflow.tracking.runs import MLFLOW, log_artifact, log_metrics, log_params, open_run
from chromaflow.tracking.uri import tracking_uri

__all__ = [
    "MLFLOW",
    "data_hash",
    "lineage_tags",
    "log_artifact",
    "log_metrics",
    "log_params",
    "open_run",
    "params_hash",
    "promote",
    "tracking_uri",
]


def __getattr__(name: str):
    # promote and its gates: loaded only when asked for
    if name == "promote":
        from chromaflow.tracking.promote import promote

        return promote
    raise AttributeError(f"module 'chromaflow.tracking' has no attribute {name!r}")
