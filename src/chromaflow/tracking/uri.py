"""Where runs and the registry live: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a local SQLite store.

The embedded default needs no server: ``sqlite:///<cwd>/runs/mlflow/mlflow.db`` with artifacts under
``<cwd>/runs/mlflow/artifacts``. Point ``--tracking-uri`` at ``http://127.0.0.1:5000`` (see ``mlflow/server.sh``)
to use a shared server instead.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = Path("runs") / "mlflow"


def default_root(cwd: str | os.PathLike | None = None) -> Path:
    """The embedded store's folder: ``<cwd>/runs/mlflow`` (absolute)."""
    return (Path(cwd) if cwd else Path.cwd()).resolve() / DEFAULT_DIR


def tracking_uri(uri: str | None = None) -> str:
    """Resolve the tracking URI: ``uri`` (``--tracking-uri``), else ``$MLFLOW_TRACKING_URI``, else local SQLite.

    The local default's folder is created on demand so MLflow can open the database.
    """
    if uri:
        return str(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    root = default_root()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def is_local_default(uri: str) -> bool:
    """True for the embedded SQLite default, whose artifacts go to ``runs/mlflow/artifacts``."""
    return uri.startswith("sqlite:///") and uri.endswith(str(DEFAULT_DIR / "mlflow.db"))


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: a folder beside the embedded SQLite store; ``None`` (server decides) else."""
    if not is_local_default(uri):
        return None
    db = Path(uri[len("sqlite:///") :])
    folder = db.parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()
