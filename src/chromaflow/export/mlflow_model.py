"""Log a chromaflow model to MLflow, register a version with the ``challenger`` alias, load it back safely.

    mv = log_model("runs/demo/train/model.safetensors", "chromaflow-colorization", example,
                   metrics={"auc_raw": 89.1, "auc_rebal": 64.0}, eval_set=eval_fingerprint)
    model, info = load_registered("models:/chromaflow-colorization@champion")

The MLflow model is a pyfunc built from code (``pyfunc_model.py``; nothing is cloudpickled) with the
safetensors weights as its ``weights`` artifact; its kind, signature, input example and served size come from
the model's description (``chromaflow.models.describe``; docs/architecture.md).

Any model without a description is refused at registration (``ValueError`` naming the file and the name). The
version carries the lineage tags, ``chromaflow.weights_sha256``, ``chromaflow.kind``, ``metric.<name>`` and
``chromaflow.eval_set``.
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

from chromaflow.color.upsample import DEFAULT_UPSAMPLE, UPSAMPLE_METHODS
from chromaflow.models.weights import load_model_file, weights_kind
from chromaflow.tracking.promote import CHALLENGER, EVAL_SET_TAG, METRIC_TAG
from chromaflow.tracking.runs import configure, log_params, open_run

log = logging.getLogger(__name__)

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
SHA_TAG = "chromaflow.weights_sha256"
LINEAGE_PREFIX = "chromaflow."
DEFAULT_EXPERIMENT = "chromaflow-models"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")


UNUSED_SIZE = 256  # the "size" model_config of the kinds that ignore it (lpips, representation)


def kinds() -> dict[str, str]:
    """``{weights config name: pyfunc kind}`` of every model the registry accepts (from the descriptions)."""
    from chromaflow.models import described_models

    return {n: d.kind for n, d in described_models().items()}


def __getattr__(name: str) -> Any:  # the former tables, now read from the model descriptions
    if name == "KINDS":
        return kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def image_example() -> np.ndarray:
    """A uint8 ``(1, 32, 32, 3)`` image: the image kinds' input example (``chromaflow.models.inference``)."""
    from chromaflow.models.inference import image_example as example

    return example()


def _example_array(example: Any, name: str) -> np.ndarray:
    """The input example of the model ``name``. Image input (its description's signature is ``IMAGE_SIG``):
    ``example`` as uint8 ``(N, H, W, 3)`` (accepts that, or a torch ``(N, 3, H, W)`` uint8 tensor; ``None``:
    :func:`image_example`). Any other input (lpips: uint8 ``(N, 2, H, W, 3)`` pairs): ``example`` when it
    already has that signature's rank, else the description's own example (a caller's image is not a pair)."""
    from chromaflow.models import describe
    from chromaflow.models.registry import IMAGE_SIG

    description = describe(name)
    if description.signature[0] != IMAGE_SIG:
        dtype, shape = description.signature[0]
        x = None if example is None or hasattr(example, "detach") else np.asarray(example)
        if x is None or x.ndim != len(shape):
            return description.example()
        fits = all(s in (-1, n) for s, n in zip(shape, x.shape, strict=True))  # same rank: checked above
        if x.dtype != np.dtype(dtype) or x.shape[0] < 1 or not fits:
            raise ValueError(f"log_model: a {name} example must be {dtype} {shape} (-1: any), got {x.dtype} {x.shape}")
        return x
    if example is None:
        return image_example()
    if hasattr(example, "detach"):  # torch tensor (N, 3, H, W)
        t = example.detach().cpu()
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"log_model: example tensor must be (N, 3, H, W), got {tuple(t.shape)}")
        example = t.permute(0, 2, 3, 1).numpy()
    x = np.asarray(example)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise ValueError(f"log_model: example must be uint8 (N, H, W, 3) with N >= 1, got {x.dtype} {x.shape}")
    return x


def _signature(name: str) -> Any:
    """The pyfunc's ``ModelSignature`` of the model ``name`` (its description's)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from chromaflow.models import describe

    sig = describe(name).signature
    inputs, outputs = (TensorSpec(np.dtype(dtype), shape) for dtype, shape in sig)
    return ModelSignature(inputs=Schema([inputs]), outputs=Schema([outputs]))


def _served_size(name: str) -> int:
    """The network input side the model ``name`` is served with (its description's ``served_size``); for the
    models without one, ``UNUSED_SIZE``."""
    from chromaflow.models import described_models

    description = described_models().get(name)
    size = None if description is None else description.served_size
    return UNUSED_SIZE if size is None else int(size)


def _check_size(kind: str, size: int, path: Path) -> None:
    """``size`` is the network input side of the colorization kinds (guided: a multiple of 8) and the short side
    of a translation model's input."""
    if kind in ("colorization", "translation") and int(size) < 8:
        raise ValueError(f"log_model: {path}: size must be >= 8 for a {kind} model, got {size}")
    if kind == "guided" and (int(size) < 8 or int(size) % 8):
        raise ValueError(f"log_model: {path}: size must be a positive multiple of 8 for siggraph17, got {size}")


def log_model(
    weights_path: str | os.PathLike,
    registered_name: str,
    example: Any,
    *,
    metrics: Mapping[str, float] | None = None,
    eval_set: str | None = None,
    alias: str = CHALLENGER,
    size: int | None = None,
    upsample: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    data: str | os.PathLike | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> Any:
    """Log ``weights_path`` as a pyfunc model, register a version of ``registered_name``, give it ``alias``.

    Args:
        weights_path: a file written by ``chromaflow.models.save_weights`` or
            (validated, never unpickled) of a kind in :data:`KINDS`;
            another model is a ``ValueError`` naming the file and the model, before anything is logged.
        example: uint8 ``(N, H, W, 3)`` (or torch uint8 ``(N, 3, H, W)``) input example; keep it small
            (it is stored as JSON), e.g. one 32x32 image (``None``: :func:`image_example`). For the ``lpips``
            kind a uint8 ``(N, 2, H, W, 3)`` pair batch is used as given; anything else is replaced by
            the model's description's example.
        metrics, eval_set: evaluation results written as version tags ``metric.<name>`` and
            ``chromaflow.eval_set`` (the frozen eval set's fingerprint), which ``promote`` compares.
        size: the network input size of the colorization kinds (``predict(size=...)``; siggraph17: a
            multiple of 8); ``None``: its description's ``served_size`` (the size its TorchServe archive is
            served with), so the registered version answers in MLflow as at the endpoint. Unused by ``lpips``
            and ``representation`` (which uses the model's ``input_size``).
        upsample: chroma upsampling of the ``colorization`` kind (``bilinear`` | ``guided``,
            ``chromaflow.color.upsample_ab``); ``None``: ``bilinear``, the thesis's protocol and what
            ``serving/model-config.yaml`` serves by default (pass the archive's ``handler.upsample`` when it differs).
            Other kinds: must be ``None``.
        experiment, data, params, uri: used to open a run with lineage when none is active.

    Returns the MLflow ``ModelVersion`` (with ``alias`` set). Lineage tags of the run are copied onto it.
    """
    import mlflow
    from mlflow import MlflowClient

    from chromaflow.models import sha256_file

    p = Path(weights_path)
    if not p.is_file():
        raise FileNotFoundError(f"log_model: weights file {p} not found")
    if not isinstance(registered_name, str) or not registered_name.strip():
        raise ValueError(f"log_model: registered_name must be a non-empty string, got {registered_name!r}")
    kind, config = weights_kind(p)  # ValueError for an unreadable file or an unknown model kind
    if size is None:
        size = _served_size(config["name"])
    _check_size(kind, size, p)
    if upsample is not None and kind != "colorization":
        raise ValueError(f"log_model: {p}: upsample applies to the colorization kind only, not {kind!r}")
    if upsample is not None and upsample not in UPSAMPLE_METHODS:
        raise ValueError(f"log_model: upsample must be one of {list(UPSAMPLE_METHODS)}, got {upsample!r}")
    x = _example_array(example, config["name"])
    metric_tags: dict[str, str] = {}
    for k, v in (metrics or {}).items():
        try:
            metric_tags[METRIC_TAG + k] = repr(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"log_model: metric {k!r} must be a number, got {v!r}") from None
    sha = sha256_file(p)

    if mlflow.active_run() is None:
        with open_run(experiment, run_name=f"register-{registered_name}", params=params, data=data, uri=uri):
            return log_model(
                p, registered_name, x, metrics=metrics, eval_set=eval_set, alias=alias, size=size, upsample=upsample
            )
    resolved = configure(uri) if uri else mlflow.get_tracking_uri()
    run = mlflow.active_run()
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    log_params({"weights_sha256": sha, "model": config["name"], "kind": kind})
    metadata = {"chromaflow.config": config, "chromaflow.kind": kind}
    if config.get("contract") is not None:
        metadata["chromaflow.contract"] = config["contract"]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"weights": str(p)},
        signature=_signature(config["name"]),
        input_example=x,
        model_config={"weights_sha256": sha, "size": int(size), "kind": kind}
        | ({"upsample": upsample or DEFAULT_UPSAMPLE} if kind == "colorization" else {}),
        metadata=metadata,
        pip_requirements=[f"mlflow=={mlflow.__version__}", "torch", "numpy", "safetensors", "chromaflow"],
    )
    mlflow.log_dict(config, "model_config.json")
    run_tags = client.get_run(run.info.run_id).data.tags
    tags = {k: v for k, v in run_tags.items() if k.startswith(LINEAGE_PREFIX)}
    tags.update(metric_tags)
    tags.update({SHA_TAG: sha, "chromaflow.model": config["name"], "chromaflow.kind": kind})
    tags["chromaflow.weights_file"] = p.name
    if eval_set is not None:
        tags[EVAL_SET_TAG] = str(eval_set)
    mv = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    client.set_registered_model_alias(registered_name, alias, mv.version)
    log.info("registered %s v%s (%s) from run %s", registered_name, mv.version, alias, run.info.run_id)
    return client.get_model_version(registered_name, mv.version)


def load_registered(
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    device: str = "cpu",
    dst: str | os.PathLike | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load ``models:/name@alias`` (or ``models:/name/version``): download the weights, verify, load strictly.

    The weights' sha256 must equal the version's ``chromaflow.weights_sha256`` tag; the model is built by
    :func:`load_model_file` (safetensors, strict, never unpickles). ``dst``: where to keep the
    downloaded weights (a temp folder, removed afterwards, when None); ``tracking_uri`` as in ``tracking_uri()``.
    Returns ``(model, info)`` with info keys ``name, version, aliases, tags, run_id, source, weights_sha256``.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

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
        _, model, _ = load_model_file(local, expected_sha256=sha, device=device)  # ValueError on sha mismatch
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
