"""log_model / load_registered / the pyfunc against a real MLflow server, with a tiny eccv16."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest

models = pytest.importorskip("chromaflow.models")
# MLflow nags about type hints on predict; the logged ModelSignature is the schema on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*Add type hints to the `predict` method")

from chromaflow.tracking.registry import load_registered, log_model  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = models.create_model("eccv16", width=1 / 16)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    models.save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def example():
    return np.random.default_rng(0).integers(0, 256, (1, 24, 20, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_name():
    return f"test-registry-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def registered(mlflow_server, model_name, weights, example, tmp_path_factory):
    """One logged + registered version shared by this module's tests (logging a model is the slow part)."""
    uri = mlflow_server
    data = tmp_path_factory.mktemp("data")
    (data / "manifest.json").write_text('{"fingerprint": "fp-1"}')
    mv = log_model(
        weights,
        model_name,
        example,
        metrics={"auc_raw": 89.5, "auc_rebal": 61.25},
        eval_set="eval-fp",
        size=32,
        data=data,
        params={"width": 1 / 16},
        uri=uri,
    )
    return mv


def test_log_model_registers_challenger_with_lineage(uri, registered, weights, model_name):
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    mv = registered
    assert client.get_registered_model(model_name).aliases == {"challenger": mv.version}
    t = mv.tags
    assert t["chromaflow.weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert float(t["metric.auc_raw"]) == 89.5 and float(t["metric.auc_rebal"]) == 61.25
    assert t["chromaflow.eval_set"] == "eval-fp"
    assert t["chromaflow.data_hash"] == hashlib.md5(b"manifest:fp-1").hexdigest()
    for k in ("chromaflow.git_commit", "chromaflow.params_hash", "chromaflow.pipeline_run_id"):
        assert t[k] == client.get_run(mv.run_id).data.tags[k]


def test_load_registered_verifies_and_loads_strictly(uri, registered, weights, model_name):
    import torch

    model, info = load_registered(f"models:/{model_name}@challenger", tracking_uri=uri)
    assert info["version"] == registered.version and info["run_id"] == registered.run_id
    assert "challenger" in info["aliases"] and info["tags"]["chromaflow.eval_set"] == "eval-fp"
    from safetensors.torch import load_file

    ref = load_file(str(weights))  # independent read of the original tensors
    state = model.state_dict()
    assert set(state) == set(ref)
    assert all(torch.equal(state[k].cpu(), ref[k]) for k in ref)
    same, _ = load_registered(f"models:/{model_name}/{registered.version}", tracking_uri=uri)
    assert same.config == model.config


def test_load_registered_rejects_tampered_hash(uri, registered, model_name):
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    good = registered.tags["chromaflow.weights_sha256"]
    client.set_model_version_tag(model_name, registered.version, "chromaflow.weights_sha256", "0" * 64)
    try:
        with pytest.raises(ValueError, match="sha256"):
            load_registered(f"models:/{model_name}@challenger", tracking_uri=uri)
    finally:
        client.set_model_version_tag(model_name, registered.version, "chromaflow.weights_sha256", good)


@pytest.mark.parametrize("bad", ["runs:/abc/model", "models:/", "models:/x@", "models:/x/one"])
def test_load_registered_bad_uri(bad):
    with pytest.raises(ValueError, match="is not 'models:/"):
        load_registered(bad)


def test_load_registered_missing_alias(uri, registered, model_name):
    with pytest.raises(LookupError, match="not found"):
        load_registered(f"models:/{model_name}@champion", tracking_uri=uri)


def test_pyfunc_from_code_no_pickle(uri, registered, model_name, example, tmp_path):
    import mlflow
    import yaml
    from skimage.color import rgb2lab

    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}@challenger", dst_path=tmp_path)
    files = [p.name for p in Path(local).rglob("*") if p.is_file()]
    assert "model.safetensors" in files and "pyfunc_model.py" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    mlmodel = yaml.safe_load((Path(local) / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"]
    assert mlmodel["metadata"]["chromaflow.contract"]["T"] == 0.38
    sig_in = mlmodel["signature"]["inputs"]
    assert '"uint8"' in sig_in and "-1" in sig_in

    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}@challenger")
    batch = np.random.default_rng(1).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
    out = pyfunc.predict(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    # colorization keeps the input's lightness: compare L with scikit-image (independent reference)
    l_in = rgb2lab(batch)[..., 0]
    l_out = rgb2lab(out)[..., 0]
    assert np.abs(l_in - l_out).mean() < 1.5
