"""chromaflow export: archive contents, lineage from the registry, idempotence, clear errors; serve config checks."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml
from safetensors.torch import load_file
from tests.serving.conftest import tiny_model

import chromaflow.tracking
from chromaflow.export import export_mar
from chromaflow.models import sha256_file
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


def test_registry_uri_carries_version_and_lineage(tmp_path, monkeypatch):
    seen = {}

    def fake_load_registered(uri):
        seen["uri"] = uri
        info = {"name": "colorizer", "version": "7", "run_id": "abc", "aliases": ["champion"],
                "tags": {"chromaflow.git_commit": "deadbeef", "chromaflow.data_hash": "d41d", "other": "x"}}  # fmt: skip
        return tiny_model(), info

    monkeypatch.setattr(chromaflow.tracking, "load_registered", fake_load_registered, raising=False)
    mar = export_mar("models:/colorizer@champion", tmp_path)
    assert seen["uri"] == "models:/colorizer@champion" and mar.name == "colorizer.mar"
    meta = json.loads(zipfile.ZipFile(mar).read("chromaflow_model.json"))
    assert meta["version"] == "7" and meta["run_id"] == "abc" and meta["aliases"] == ["champion"]
    assert meta["lineage"] == {"chromaflow.git_commit": "deadbeef", "chromaflow.data_hash": "d41d"}
    assert json.loads((tmp_path / "colorizer.json").read_text())["lineage"] == meta["lineage"]
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
