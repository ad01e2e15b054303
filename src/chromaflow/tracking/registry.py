"""Log a colorization model to MLflow, register a version with the ``challenger`` alias, load it back safely.

    mv = log_model("runs/demo/train/model.safetensors", "chromaflow-colorization", example,
                   metrics={"auc_raw": 89.1, "auc_rebal": 64.0}, eval_set=eval_fingerprint)
    model, info = load_registered("models:/chromaflow-colorization@champion")

The MLflow model is a pyfunc built from code (``pyfunc_model.py``; nothing is cloudpickled) with the
safetensors weights as its ``weights`` artifact, a uint8 ``(N, H, W, 3)`` -> uint8 ``(N, H, W, 3)`` signature,
an input example, and the model config + Lab contract in its metadata. The version carries the lineage
tags, ``chromaflow.weights_sha256``, ``metric.<name>`` and ``chromaflow.eval_set``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chromaflow.tracking.promote import CHALLENGER, EVAL_SET_TAG, METRIC_TAG
from chromaflow.tracking.runs import configure, log_params, open_run

log = logging.getLogger(__name__)

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
SHA_TAG = "chromaflow.weights_sha256"
LINEAGE_PREFIX = "chromaflow."
DEFAULT_EXPERIMENT = "chromaflow-models"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")


def _example_array(example: Any) -> np.ndarray:
    """``example`` as uint8 ``(N, H, W, 3)``: accepts that, or a torch ``(N, 3, H, W)`` uint8 tensor."""
    if hasattr(example, "detach"):  # torch tensor (N, 3, H, W)
        t = example.detach().cpu()
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"log_model: example tensor must be (N, 3, H, W), got {tuple(t.shape)}")
        example = t.permute(0, 2, 3, 1).numpy()
    x = np.asarray(example)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise ValueError(f"log_model: example must be uint8 (N, H, W, 3) with N >= 1, got {x.dtype} {x.shape}")
    return x


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    spec = TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))  # any batch and size: nothing frozen
    return ModelSignature(inputs=Schema([spec]), outputs=Schema([spec]))


def log_model(
    weights_path: str | os.PathLike,
    registered_name: str,
    example: Any,
    *,
    metrics: Mapping[str, float] | None = None,
    eval_set: str | None = None,
    alias: str = CHALLENGER,
    size: int = 256,
    experiment: str = DEFAULT_EXPERIMENT,
    data: str | os.PathLike | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> Any:
    """Log ``weights_path`` as a pyfunc model, register a version of ``registered_name``, give it ``alias``.

    Args:
        weights_path: a file written by ``chromaflow.models.save_weights`` (validated, never unpickled).
        example: uint8 ``(N, H, W, 3)`` (or torch uint8 ``(N, 3, H, W)``) input example; keep it small
            (it is stored as JSON), e.g. one 32x32 image.
        metrics, eval_set: evaluation results written as version tags ``metric.<name>`` and
            ``chromaflow.eval_set`` (the frozen eval set's fingerprint), which ``promote`` compares.
        size: the network input size the pyfunc uses (``colorize(size=...)``).
        experiment, data, params, uri: used to open a run with lineage when none is active.

    Returns the MLflow ``ModelVersion`` (with ``alias`` set). Lineage tags of the run are copied onto it.
    """
    import mlflow
    from mlflow import MlflowClient

    from chromaflow.models import read_config, sha256_file

    p = Path(weights_path)
    if not p.is_file():
        raise FileNotFoundError(f"log_model: weights file {p} not found")
    if not isinstance(registered_name, str) or not registered_name.strip():
        raise ValueError(f"log_model: registered_name must be a non-empty string, got {registered_name!r}")
    config = read_config(p)  # raises ValueError for a file not written by save_weights
    x = _example_array(example)
    metric_tags: dict[str, str] = {}
    for k, v in (metrics or {}).items():
        try:
            metric_tags[METRIC_TAG + k] = repr(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"log_model: metric {k!r} must be a number, got {v!r}") from None
    sha = sha256_file(p)

    if mlflow.active_run() is None:
        with open_run(experiment, run_name=f"register-{registered_name}", params=params, data=data, uri=uri):
            return log_model(p, registered_name, x, metrics=metrics, eval_set=eval_set, alias=alias, size=size)
    resolved = configure(uri) if uri else mlflow.get_tracking_uri()
    run = mlflow.active_run()
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    log_params({"weights_sha256": sha, "model": config["name"]})
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"weights": str(p)},
        signature=_signature(),
        input_example=x,
        model_config={"weights_sha256": sha, "size": int(size)},
        metadata={"chromaflow.config": config, "chromaflow.contract": config["contract"]},
        pip_requirements=[f"mlflow=={mlflow.__version__}", "torch", "numpy", "safetensors", "chromaflow"],
    )
    mlflow.log_dict(config, "model_config.json")
    run_tags = client.get_run(run.info.run_id).data.tags
    tags = {k: v for k, v in run_tags.items() if k.startswith(LINEAGE_PREFIX)}
    tags.update(metric_tags)
    tags.update({SHA_TAG: sha, "chromaflow.model": config["name"], "chromaflow.weights_file": p.name})
    if eval_set is not None:
        tags[EVAL_SET_TAG] = str(eval_set)
    mv = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    client.set_registered_model_alias(registered_name, alias, mv.version)
    log.info("registered %s v%s (%s) from run %s", registered_name, mv.version, alias, run.info.run_id)
    return client.get_model_version(registered_name, mv.version)


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


def load_registered(
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    device: str = "cpu",
    dst: str | os.PathLike | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load ``models:/name@alias`` (or ``models:/name/version``): download the weights, verify, load strictly.

    The weights' sha256 must equal the version's ``chromaflow.weights_sha256`` tag; the model is built by
    ``chromaflow.models.load_weights`` (safetensors, strict, never unpickles). ``dst``: where to keep the
    downloaded weights (a temp folder, removed afterwards, when None); ``tracking_uri`` as in ``tracking_uri()``.
    Returns ``(model, info)`` with info keys ``name, version, aliases, tags, run_id, source, weights_sha256``.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from chromaflow.models import load_weights

    m = _URI.match(model_uri or "")
    if not m:
        raise ValueError(
            f"load_registered: {model_uri!r} is not 'models:/<name>@<alias>' or 'models:/<name>/<version>'"
        )
    resolved = configure(tracking_uri)
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    name = m["name"]
    try:
        if m["alias"]:
            mv = client.get_model_version_by_alias(name, m["alias"])
        else:
            mv = client.get_model_version(name, m["version"])
    except MlflowException as e:
        raise LookupError(f"load_registered: {model_uri} not found at {resolved}: {e.message}") from None
    tags = dict(mv.tags or {})
    sha = tags.get(SHA_TAG)
    if not sha:
        raise ValueError(f"load_registered: {name} v{mv.version} has no {SHA_TAG} tag; refusing unverified weights")
    fname = tags.get("chromaflow.weights_file", "model.safetensors")
    artifact = f"models:/{name}/{mv.version}/artifacts/{fname}"
    with tempfile.TemporaryDirectory(prefix="chromaflow-weights-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=artifact, dst_path=str(dst or tmp))
        model = load_weights(local, expected_sha256=sha, device=device)  # ValueError on sha mismatch
    info = {
        "name": name,
        "version": str(mv.version),
        "aliases": list(mv.aliases or []),
        "tags": tags,
        "run_id": mv.run_id,
        "source": mv.source,
        "weights_sha256": sha,
        "uri": model_uri,
    }
    return model, info
