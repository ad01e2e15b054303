"""log_model / load_registered / the pyfunc against a real MLflow server, with a tiny eccv16."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import uuid
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

import chromaflow.models as models

# MLflow nags about type hints on predict; the logged ModelSignature is the schema on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*Add type hints to the `predict` method")

from chromaflow.export import mlflow_model as registry  # noqa: E402
from chromaflow.export.mlflow_model import load_registered, log_model  # noqa: E402


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
    assert pyfunc.model_config["upsample"] == "bilinear"  # the served default (serving/model-config.yaml)
    batch = np.random.default_rng(1).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
    out = pyfunc.predict(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    # colorization keeps the input's lightness: compare L with scikit-image (independent reference)
    l_in = rgb2lab(batch)[..., 0]
    l_out = rgb2lab(out)[..., 0]
    assert np.abs(l_in - l_out).mean() < 1.5


def test_a_version_registered_before_the_pyfunc_moved_to_export_still_loads(
    uri, registered, weights, model_name, monkeypatch, tmp_path
):
    """Versions registered before the move carry the old pyfunc file, which imports
    ``chromaflow.tracking.registry.load_model_file``: they load and answer as a version registered now."""
    import mlflow

    legacy = tmp_path / "pyfunc_model.py"  # the name it had in the package and has in those versions' artifacts
    legacy.write_text((Path(__file__).with_name("data") / "pyfunc_model_before_export.py").read_text())
    assert "from chromaflow.tracking.registry import load_model_file" in legacy.read_text()
    monkeypatch.setattr(registry, "PYFUNC_FILE", legacy)  # what log_model logged then
    old = log_model(weights, model_name, None, size=32, uri=uri, alias="before-export")
    monkeypatch.undo()
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{old.version}", dst_path=tmp_path / "dl"
    )
    assert (Path(local) / "pyfunc_model.py").read_text() == legacy.read_text()
    before = mlflow.pyfunc.load_model(f"models:/{model_name}/{old.version}")
    now = mlflow.pyfunc.load_model(f"models:/{model_name}/{registered.version}")
    batch = np.random.default_rng(2).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
    assert np.array_equal(before.predict(batch), now.predict(batch))


# ---------------------------------------------------------------------------------------- every registered kind


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _register_quietly(weights, name, example, uri, **kw):
    """``log_model`` while recording MLflow's WARNING log records and Python warnings; returns (mv, messages)."""
    handler = _Records()
    logger = logging.getLogger("mlflow")  # MLflow's own handler does not propagate to caplog's root handler
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mv = log_model(weights, name, example, uri=uri, experiment="test-kinds")  # size: the served one
    finally:
        logger.removeHandler(handler)
    return mv, handler.messages + [str(w.message) for w in caught]


def _example_complaints(messages):
    """Every recorded warning but MLflow's type-hint nag (filtered on purpose for this whole module)."""
    return [m for m in messages if "Add type hints to the `predict` method" not in m]


@pytest.fixture(scope="module")
def kind_files(tmp_path_factory):
    """Tiny random-weight files of every non-eccv16 kind: siggraph17, squeeze_colorizer, lpips, lpips_2afc,
    splitbrain."""
    import torch

    from chromaflow.models import lpips as L

    root = tmp_path_factory.mktemp("kinds")
    torch.manual_seed(0)
    files = {}
    files["siggraph17"] = root / "guided.safetensors"
    models.save_weights(models.create_model("siggraph17", width=1 / 16), files["siggraph17"])
    files["squeeze_colorizer"] = root / "squeeze.safetensors"
    models.save_weights(models.create_model("squeeze_colorizer", width=1 / 16), files["squeeze_colorizer"])
    files["splitbrain"] = root / "splitbrain.safetensors"
    sb = models.create_model("splitbrain", variant="split_cl_cl", input_size=32, width=1 / 8, fc_width=16)
    models.save_weights(sb, files["splitbrain"])
    lp = L.build_lpips("squeeze", trunk="random", seed=0)
    files["lpips"] = root / "lpips.safetensors"
    models.save_weights(lp, files["lpips"])
    two = models.create_model("lpips_2afc", net="squeeze")
    L.load_trunk_weights(two.lpips, L.random_trunk_state("squeeze", 1))
    with torch.no_grad():
        for w in two.lpips.lins:
            w.uniform_(0, 1)
    files["lpips_2afc"] = root / "model.safetensors"
    models.save_weights(two, files["lpips_2afc"])
    return files


@pytest.fixture(scope="module")
def kinds(mlflow_server, kind_files, example):
    """Each file registered once (``{config name: (ModelVersion, MLflow warnings)}``)."""
    out = {}
    for name, path in kind_files.items():
        while mlflow.active_run() is not None:
            mlflow.end_run()
        out[name] = _register_quietly(path, f"test-{name}-{uuid.uuid4().hex[:6]}", example, mlflow_server)
    return out


def _pyfunc(uri, mv):
    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}")


def test_registering_every_kind_emits_no_example_warning(uri, kinds):
    for name, (mv, messages) in kinds.items():
        assert not _example_complaints(messages), (name, messages)
        assert mv.tags["chromaflow.kind"] == registry.KINDS[name] and mv.tags["chromaflow.model"] == name


def test_guided_pyfunc_equals_the_served_archive_no_hint_path(uri, kinds, kind_files):
    """Registered without ``size``, the version answers as its archive is served (serving/guided-model-config.yaml)."""
    from chromaflow.export.mar import served_settings
    from chromaflow.serving import Request
    from chromaflow.serving.guided import GuidedService

    batch = np.random.default_rng(2).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
    pyfunc = _pyfunc(uri, kinds["siggraph17"][0])
    settings = served_settings("siggraph17")
    assert pyfunc.model_config["size"] == settings.size != registry.UNUSED_SIZE
    out = pyfunc.predict(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    service = GuidedService.from_weights(kind_files["siggraph17"], settings, device="cpu")
    reqs = []
    for img in batch:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        reqs.append(Request(body={"image": base64.b64encode(buf.getvalue()).decode()}, content_type="application/json"))
    served = np.stack([np.asarray(Image.open(io.BytesIO(r.body)).convert("RGB")) for r in service.handle(reqs)])
    np.testing.assert_array_equal(out, served)


@pytest.mark.parametrize("name", ["lpips", "lpips_2afc"])
def test_lpips_pyfunc_gives_the_library_distances(uri, kinds, kind_files, name):
    import torch

    from chromaflow.models.lpips import load_distance

    mv = kinds[name][0]
    mlflow.set_tracking_uri(uri)
    mlmodel = yaml.safe_load(
        (Path(mlflow.artifacts.download_artifacts(f"models:/{mv.name}/{mv.version}/MLmodel"))).read_text()
    )
    assert "-1, 2, -1, -1, 3" in mlmodel["signature"]["inputs"] and '"float32"' in mlmodel["signature"]["outputs"]
    assert mlmodel["saved_input_example_info"]["type"] == "ndarray"
    pairs = np.random.default_rng(3).integers(0, 256, (3, 2, 40, 44, 3), dtype=np.uint8)
    d = _pyfunc(uri, mv).predict(pairs)
    assert d.dtype == np.float32 and d.shape == (3,)
    ref = load_distance(kind_files[name])  # chromaflow.models.lpips on the same pairs, [0, 1] floats
    t = torch.from_numpy(pairs).permute(0, 1, 4, 2, 3).float() / 255.0
    with torch.no_grad():
        expected = ref(t[:, 0], t[:, 1]).numpy()
    np.testing.assert_allclose(d, expected, rtol=1e-5, atol=1e-7)
    assert (d > 0).all()
    with pytest.raises(Exception, match="2|shape"):  # an image batch is not a pair batch
        _pyfunc(uri, mv).predict(pairs[:, 0])


def test_representation_pyfunc_pools_splitbrain_conv5(uri, kinds, kind_files):
    import torch

    from chromaflow.evaluate.transfer import load_extractor

    batch = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    pyfunc = _pyfunc(uri, kinds["splitbrain"][0])
    f = pyfunc.predict(batch)
    ex = load_extractor(str(kind_files["splitbrain"]), device=torch.device("cpu"))  # the transfer probes' features
    with torch.no_grad():
        conv5 = ex.fn(torch.from_numpy(batch).permute(0, 3, 1, 2))["conv5"]
    assert f.dtype == np.float32 and f.shape == (2, conv5.shape[1])
    np.testing.assert_allclose(f, conv5.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    assert pyfunc.predict(batch[:1, :20, :28]).shape == (1, conv5.shape[1])  # other sizes: resized to input_size


def test_unknown_kind_is_refused_at_registration(uri, tmp_path, kind_files, weights):
    from mlflow import MlflowClient
    from torch import nn

    model_name = f"test-refused-{uuid.uuid4().hex[:8]}"

    net = nn.Linear(2, 2)
    net.config = {"name": "mystery", "kwargs": {}, "contract": models.make_contract()}
    path = tmp_path / "mystery.safetensors"
    models.save_weights(net, path)
    with pytest.raises(ValueError, match=r"mystery\.safetensors.*'mystery'"):
        log_model(path, model_name, np.zeros((1, 8, 8, 3), np.uint8), uri=uri)
    client = MlflowClient(uri, registry_uri=uri)
    assert not client.search_registered_models(filter_string=f"name = '{model_name}'")
    with pytest.raises(ValueError, match="multiple of 8"):
        log_model(kind_files["siggraph17"], model_name, None, size=36, uri=uri)
    with pytest.raises(ValueError, match="upsample applies to the colorization kind only, not 'guided'"):
        log_model(kind_files["siggraph17"], model_name, None, upsample="guided", uri=uri)
    with pytest.raises(ValueError, match="upsample must be one of .*'bicubic'"):
        log_model(weights, model_name, None, upsample="bicubic", uri=uri)
    assert not client.search_registered_models(filter_string=f"name = '{model_name}'")


def test_colorization_pyfunc_with_guided_upsampling_equals_the_library(uri, tmp_path):
    """``log_model(upsample="guided")`` reaches the pyfunc's predict: the same pixels as ``colorize(upsample=...)``."""
    import mlflow
    import torch

    torch.manual_seed(3)
    net = models.create_model("eccv16", width=1 / 16).eval()
    with torch.no_grad():
        net.head.weight.mul_(50.0)  # logits that vary over the image: ab with structure to upsample
    path = tmp_path / "eccv16.safetensors"
    models.save_weights(net, path)
    name = f"test-guided-up-{uuid.uuid4().hex[:8]}"
    log_model(path, name, None, size=32, upsample="guided", uri=uri)
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    assert pyfunc.model_config["upsample"] == "guided"
    batch = np.random.default_rng(2).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    net = models.load_weights(path)
    rgb = torch.from_numpy(batch).permute(0, 3, 1, 2)
    want = (models.colorize(net, rgb, size=32, upsample="guided") * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    bilinear = (models.colorize(net, rgb, size=32) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    got = pyfunc.predict(batch)
    assert np.abs(got.astype(int) - want.numpy().astype(int)).max() <= 1
    assert not np.array_equal(want.numpy(), bilinear.numpy())  # the option changes the pixels


def test_defining_the_pyfunc_model_raises_no_type_hint_warning():
    """MLflow's "Add type hints to the `predict` method" fired at each registration and load (4 times a demo)."""
    import runpy

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runpy.run_path(str(registry.PYFUNC_FILE))  # what MLflow does on each log_model / load_model
    assert not [w for w in seen if "type hints" in str(w.message)], [str(w.message) for w in seen]
