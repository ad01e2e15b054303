"""chromaflow export: archive contents, lineage from the registry, idempotence, clear errors; serve config checks;
LPIPS registrations (lpips and lpips_2afc) exported from a real MLflow server and served as registered."""

from __future__ import annotations

import base64
import json
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file
from tests.serving.conftest import encode, tiny_model

import chromaflow.export.mlflow_model
from chromaflow.export import export_mar
from chromaflow.models import save_weights, sha256_file
from chromaflow.serve import CONFIG_TEMPLATE, ServeError, check_secure, read_properties


def test_local_weights_archive(tiny_weights, tmp_path):
    mar = export_mar(tiny_weights, tmp_path, batch_size=4, max_batch_delay_ms=7, name="tiny", version="3")
    names = set(zipfile.ZipFile(mar).namelist())
    assert names == {
        "MAR-INF/MANIFEST.json", "model.safetensors", "chromaflow_model.json", "model-config.yaml", "colorize_handler.py"
    }  # fmt: skip
    z = zipfile.ZipFile(mar)
    manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["modelName"] == "tiny" and manifest["model"]["modelVersion"] == "3"
    cfg = yaml.safe_load(z.read("model-config.yaml"))
    assert (cfg["batchSize"], cfg["maxBatchDelay"]) == (4, 7) and cfg["handler"]["max_pixels"] > 0
    meta = json.loads(z.read("chromaflow_model.json"))
    assert meta["sha256"] == sha256_file(tiny_weights) and meta["contract"]["T"] == 0.38
    (tmp_path / "w.safetensors").write_bytes(z.read("model.safetensors"))
    assert set(load_file(tmp_path / "w.safetensors")) == set(tiny_model().state_dict())  # tensors only, no pickle
    side = json.loads((tmp_path / "tiny.json").read_text())
    assert side["archive_sha256"] == sha256_file(mar) and side["version"] == "3"
    before = mar.stat().st_mtime_ns
    assert export_mar(tiny_weights, tmp_path, batch_size=4, max_batch_delay_ms=7, name="tiny", version="3") == mar
    assert mar.stat().st_mtime_ns == before  # a finished step re-run is a no-op


def test_cli_sets_the_network_input_size(tiny_weights, tmp_path):
    """The archive's default input side is the template's (64: the shipped model's training scale); --size overrides."""
    from chromaflow.cli import main as cli

    size = lambda mar: yaml.safe_load(zipfile.ZipFile(mar).read("model-config.yaml"))["handler"]["size"]  # noqa: E731
    assert cli(["export", "--weights", str(tiny_weights), "--out", str(tmp_path / "a")]) == 0
    assert cli(["export", "--weights", str(tiny_weights), "--out", str(tmp_path / "b"), "--size", "256"]) == 0
    assert size(next((tmp_path / "a").glob("*.mar"))) == 64 and size(next((tmp_path / "b").glob("*.mar"))) == 256


def test_registry_uri_carries_version_and_lineage(tmp_path, monkeypatch):
    seen = {}

    def fake_load_registered(uri, *, tracking_uri=None, dst=None):  # downloads into dst, as the real one does
        seen["uri"] = uri
        model = tiny_model()
        sha = save_weights(model, Path(dst) / "model.safetensors")
        info = {"name": "chromaflow-colorization", "version": "7", "run_id": "abc", "aliases": ["champion"], "weights_sha256": sha,
                "tags": {"chromaflow.git_commit": "deadbeef", "chromaflow.data_hash": "d41d", "other": "x"}}  # fmt: skip
        return model, info

    monkeypatch.setattr(chromaflow.export.mlflow_model, "load_registered", fake_load_registered, raising=False)
    mar = export_mar("models:/chromaflow-colorization@champion", tmp_path)
    # served by its kind's one name, whatever the registry calls it; the registered name stays in the metadata
    assert seen["uri"] == "models:/chromaflow-colorization@champion" and mar.name == "colorize.mar"
    meta = json.loads(zipfile.ZipFile(mar).read("chromaflow_model.json"))
    assert meta["name"] == "colorize" and meta["registered_name"] == "chromaflow-colorization"
    assert meta["version"] == "7" and meta["run_id"] == "abc" and meta["aliases"] == ["champion"]
    assert meta["lineage"] == {"chromaflow.git_commit": "deadbeef", "chromaflow.data_hash": "d41d"}
    assert json.loads((tmp_path / "colorize.json").read_text())["lineage"] == meta["lineage"]
    assert json.loads(zipfile.ZipFile(mar).read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"] == "7"


def test_export_errors_name_the_input(tmp_path, tiny_weights):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        export_mar(tmp_path / "nope.safetensors", tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="bad.safetensors"):
        export_mar(bad, tmp_path)
    with pytest.raises(ValueError, match="unknown key"):
        export_mar(tiny_weights, tmp_path, handler_config={"max_pixel": 5})
    with pytest.raises(ValueError, match="batch_size"):
        export_mar(tiny_weights, tmp_path, batch_size=0)


def test_shipped_config_is_secure_and_weakening_it_is_refused():
    props = read_properties(CONFIG_TEMPLATE.read_text())
    props["allowed_urls"] = "file:///srv/model-store/.*"
    check_secure(props)  # the shipped template passes
    assert props["enable_model_api"] == "false" and props["enable_metrics_api"] == "true"
    for key, value in [
        ("disable_token_authorization", "true"),
        ("enable_model_api", "true"),
        ("enable_envvars_config", "true"),
        ("management_address", "http://0.0.0.0:8081"),
        ("allowed_urls", "http(s)?://.*"),
        ("max_request_size", ""),
    ]:
        with pytest.raises(ServeError, match=key):
            check_secure({**props, key: value})


@pytest.mark.parametrize(
    "key,value",
    [
        ("inference_address", "http://0.0.0.0:8080"),
        ("inference_address", "http://192.0.2.7:8080"),
        ("metrics_address", "http://0.0.0.0:8082"),
        ("grpc_inference_address", "0.0.0.0"),
    ],
)
def test_non_loopback_addresses_need_public(key, value, caplog):
    props = read_properties(CONFIG_TEMPLATE.read_text()) | {"allowed_urls": "file:///srv/store/.*"}
    with pytest.raises(ServeError, match=f"{key}.*--public"):
        check_secure({**props, key: value})
    check_secure({**props, key: value}, public=True)  # asked for: allowed, loudly
    assert value in caplog.text and "TLS" in caplog.text


def test_management_and_heap_stay_enforced_even_when_public():
    props = read_properties(CONFIG_TEMPLATE.read_text()) | {"allowed_urls": "file:///srv/store/.*"}
    assert "-Xmx" in props["vmargs"] and props["decode_input_request"] == "false"
    for key, value in [("grpc_management_address", "0.0.0.0"), ("vmargs", "-Xms64m")]:
        with pytest.raises(ServeError, match=key):
            check_secure({**props, key: value}, public=True)


def test_serve_refuses_a_public_gateway_host_without_public(tmp_path):
    import argparse

    from chromaflow.serve import add_arguments, main

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--run-dir", str(tmp_path), "--gateway", "0", "--gateway-host", "0.0.0.0"])
    with pytest.raises(SystemExit, match="--public"):
        main(args)
    assert not any(tmp_path.iterdir())  # refused before anything started


# ------------------------------------------------------------------------------------ LPIPS from the registry


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """Tiny LPIPS weights with random squeeze trunks: an ``lpips`` file and a ``train --task lpips`` output
    (config ``lpips_2afc``: LPIPS + ranking net G; what the LPIPS pipeline's promote step registers)."""
    import torch

    from chromaflow.models import create_model, save_weights
    from chromaflow.models import lpips as L

    root = tmp_path_factory.mktemp("lpips-weights")
    files = {"lpips": root / "lpips.safetensors", "lpips_2afc": root / "model.safetensors"}
    save_weights(L.build_lpips("squeeze", trunk=L.random_trunk_state("squeeze", seed=3)), files["lpips"])
    two = create_model("lpips_2afc", net="squeeze")
    L.load_trunk_weights(two.lpips, L.random_trunk_state("squeeze", 1))
    torch.manual_seed(0)
    with torch.no_grad():
        for w in two.lpips.lins:
            w.uniform_(0, 1)
    save_weights(two, files["lpips_2afc"])
    return files


@pytest.fixture(scope="module")
def lpips_registered(mlflow_server, lpips_files):  # noqa: F811 - the imported session fixture
    """The ``lpips_2afc`` training output registered in a real MLflow server as ``@champion``."""
    import mlflow

    from chromaflow.export.mlflow_model import log_model

    while mlflow.active_run() is not None:
        mlflow.end_run()
    name = f"test-export-lpips-{uuid.uuid4().hex[:6]}"
    log_model(lpips_files["lpips_2afc"], name, None, alias="champion", uri=mlflow_server, experiment="test-export")
    return mlflow_server, f"models:/{name}@champion"


def _library_and_served(weights, model_dir) -> tuple[float, float]:
    """LPIPS of one random 40x44 pair: the library on ``weights`` (``load_distance``, [0, 1] floats) and
    ``LpipsService.from_model_dir(model_dir)`` (what lpips_handler.py loads) answering a PNG request."""
    import torch

    from chromaflow.models.lpips import load_distance
    from chromaflow.serving import Request
    from chromaflow.serving.lpips_core import LpipsService

    x0, x1 = np.random.default_rng(5).integers(0, 256, (2, 40, 44, 3), dtype=np.uint8)
    t0, t1 = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0 for x in (x0, x1))
    with torch.no_grad():
        expected = float(load_distance(weights)(t0, t1)[0])
    service = LpipsService.from_model_dir(model_dir)
    body = {k: base64.b64encode(encode(x)).decode() for k, x in (("image0", x0), ("image1", x1))}
    (resp,) = service.handle([Request(body=json.dumps(body).encode(), content_type="application/json")])
    assert resp.status == 200, resp.body
    return expected, json.loads(resp.body)["distance"]


MLFLOW_NAG = "ignore:.*Add type hints to the `predict` method"  # the logged ModelSignature is the schema on purpose
LPIPS_MAR = {"MAR-INF/MANIFEST.json", "lpips.safetensors", "chromaflow_model.json", "model-config.yaml",
             "lpips_handler.py"}  # fmt: skip


@pytest.mark.filterwarnings(MLFLOW_NAG)
def test_registered_lpips_training_output_exports_a_servable_lpips_mar(lpips_registered, lpips_files, tmp_path):
    from chromaflow.models.lpips import load_distance

    server, uri = lpips_registered
    mar = export_mar(uri, tmp_path / "out", tracking_uri=server)
    assert mar.name == "lpips.mar"  # the /predictions/lpips endpoint, whatever the registered name
    z = zipfile.ZipFile(mar)
    assert set(z.namelist()) == LPIPS_MAR
    assert json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "lpips_handler.py"
    meta = json.loads(z.read("chromaflow_model.json"))
    assert meta["registry_weights_sha256"] == sha256_file(lpips_files["lpips_2afc"]) and meta["model_uri"] == uri
    assert meta["registered_name"] == uri.split("/")[1].split("@")[0] and meta["aliases"] == ["champion"]
    assert meta["config"]["name"] == "lpips_2afc" and meta["config"]["kwargs"]["net"] == "squeeze"
    assert z.read("lpips.safetensors") == lpips_files["lpips_2afc"].read_bytes()  # packed as registered
    z.extractall(tmp_path / "unpacked")
    load_distance(tmp_path / "unpacked" / "lpips.safetensors")  # strictly loadable
    expected, served = _library_and_served(lpips_files["lpips_2afc"], tmp_path / "unpacked")
    assert expected > 0 and served == pytest.approx(expected, rel=1e-5, abs=1e-7)
    before = mar.stat().st_mtime_ns
    assert export_mar(uri, tmp_path / "out", tracking_uri=server) == mar and mar.stat().st_mtime_ns == before


@pytest.mark.filterwarnings(MLFLOW_NAG)
def test_tampered_registered_lpips_file_is_refused(lpips_registered, lpips_files, tmp_path):
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    server, uri = lpips_registered
    name, alias = uri[len("models:/") :].split("@")
    version = mlflow.MlflowClient(server, registry_uri=server).get_model_version_by_alias(name, alias).version
    mlflow.set_tracking_uri(server)
    repo = get_artifact_repository(ModelsArtifactRepository.get_underlying_uri(f"models:/{name}/{version}"))
    good = lpips_files["lpips_2afc"]
    bad = tmp_path / "up" / good.name  # same name as the registered file: overwrites it on the server
    bad.parent.mkdir()
    data = bytearray(good.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last tensor
    bad.write_bytes(bytes(data))
    repo.log_artifact(str(bad), "artifacts")
    try:
        with pytest.raises(ValueError, match="sha256"):
            export_mar(uri, tmp_path / "out", tracking_uri=server)
        assert not (tmp_path / "out").exists()
    finally:
        repo.log_artifact(str(good), "artifacts")  # restore it for the other tests


def test_registered_lpips_file_is_packed_as_downloaded(lpips_files, tmp_path, monkeypatch):
    """An ``lpips`` registration: the downloaded file goes into the archive byte for byte (no re-save), and a
    download whose sha256 differs from the version's tag is refused by export_mar itself."""
    src = lpips_files["lpips"]
    sha = {"tag": sha256_file(src)}

    def fake_load_registered(uri, *, tracking_uri=None, dst=None):
        from chromaflow.models.lpips import load_distance

        got = Path(dst) / "artifacts" / src.name  # where mlflow's download_artifacts puts it
        got.parent.mkdir()
        got.write_bytes(src.read_bytes())
        info = {"name": "chromaflow-lpips", "version": "4", "aliases": ["champion"], "weights_sha256": sha["tag"]}
        return load_distance(got), info

    monkeypatch.setattr(chromaflow.export.mlflow_model, "load_registered", fake_load_registered, raising=False)
    mar = export_mar("models:/chromaflow-lpips@champion", tmp_path / "out")
    z = zipfile.ZipFile(mar)
    assert mar.name == "lpips.mar" and set(z.namelist()) == LPIPS_MAR
    assert z.read("lpips.safetensors") == src.read_bytes()
    meta = json.loads(z.read("chromaflow_model.json"))
    assert meta["version"] == "4" and meta["sha256"] == meta["registry_weights_sha256"] == sha["tag"]
    z.extractall(tmp_path / "unpacked")
    expected, served = _library_and_served(src, tmp_path / "unpacked")
    assert served == pytest.approx(expected, rel=1e-5, abs=1e-7)
    sha["tag"] = "0" * 64
    with pytest.raises(ValueError, match="sha256"):
        export_mar("models:/chromaflow-lpips@champion", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_served_settings_are_the_serving_templates(repo_root):
    """What the demo's gallery and any offline caller use is what an exported archive is served with."""
    from chromaflow.export.mar import served_settings
    from chromaflow.serving import ServiceConfig
    from chromaflow.serving.guided import GuidedConfig

    auto, guided = served_settings("eccv16"), served_settings("siggraph17")
    assert isinstance(auto, ServiceConfig) and isinstance(guided, GuidedConfig)
    for s, name in ((auto, "model-config.yaml"), (guided, "guided-model-config.yaml")):
        handler = yaml.safe_load((repo_root / "serving" / name).read_text())["handler"]
        assert s.size == handler["size"]
    assert auto.method == yaml.safe_load((repo_root / "serving" / "model-config.yaml").read_text())["handler"]["method"]


def test_two_shipped_models_of_one_kind_need_their_own_served_names(tiny_weights, tmp_path, monkeypatch):
    """``chromaflow serve`` exports every shipped model; two of the colorization kind would both be ``colorize``
    (the second archive silently replacing the first). A card's ``served_name`` gives the second its own URL;
    without one, serving stops with both folders named."""
    import shutil

    from chromaflow.serve import shipped_archives

    root = tmp_path / "weights"
    for name in ("colorization", "squeeze_colorizer"):
        (root / name).mkdir(parents=True)
        shutil.copy(tiny_weights, root / name / "model.safetensors")
        card = {"sha256": sha256_file(tiny_weights)}
        (root / name / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("CHROMAFLOW_WEIGHTS", str(root))
    with pytest.raises(
        SystemExit, match="squeeze_colorizer and weights/colorization would both be served as 'colorize'"
    ):
        shipped_archives(tmp_path / "mar1")
    card = {"sha256": sha256_file(tiny_weights), "served_name": "colorize_squeeze"}
    (root / "squeeze_colorizer" / "card.json").write_text(json.dumps(card))
    names = sorted(mar.name for _, mar in shipped_archives(tmp_path / "mar2"))
    assert names == ["colorize.mar", "colorize_squeeze.mar"]
