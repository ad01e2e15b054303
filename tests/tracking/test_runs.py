"""open_run / log_* against a real MLflow server: lineage tags, params, metrics, artifacts, no-op outside runs."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from chromaflow.tracking import log_artifact, log_metrics, log_params, open_run, params_hash


def test_open_run_sets_lineage_and_logs(uri, tmp_path, monkeypatch, repo_root):
    from mlflow import MlflowClient

    monkeypatch.setenv("CHROMAFLOW_PIPELINE_RUN_ID", "pipe-123")
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"fingerprint": "abc", "counts": {}}))
    params = {"lr": 0.001, "model": {"name": "eccv16", "width": 0.25}}
    art = tmp_path / "metrics.json"
    art.write_text('{"loss": 1.0}')
    with open_run("test-runs", run_name="r1", params=params, data=data, uri=uri) as run:
        log_metrics({"loss": 2.5, "skip": "text", "nan": float("nan")}, step=3)
        log_artifact(art)
        run_id = run.info.run_id
    client = MlflowClient(uri)
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    t = r.data.tags
    assert t["chromaflow.pipeline_run_id"] == "pipe-123"
    assert t["chromaflow.params_hash"] == params_hash(params)
    assert t["chromaflow.data_hash"] == hashlib.md5(b"manifest:abc").hexdigest()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True)
    assert t["chromaflow.git_commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert t["chromaflow.git_dirty"] in ("true", "false", "unknown")
    assert r.data.params == {"lr": "0.001", "model.name": "eccv16", "model.width": "0.25"}
    assert r.data.metrics == {"loss": 2.5}
    hist = client.get_metric_history(run_id, "loss")
    assert [m.step for m in hist] == [3]
    assert [f.path for f in client.list_artifacts(run_id)] == ["metrics.json"]


def test_failed_block_marks_run_failed(uri):
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"), open_run("test-runs", uri=uri) as run:
        rid = run.info.run_id
        raise RuntimeError("boom")
    assert MlflowClient(uri).get_run(rid).info.status == "FAILED"


def test_nested_run_has_parent(uri):
    from mlflow import MlflowClient

    with open_run("test-runs", run_name="outer", uri=uri) as outer, open_run("test-runs", uri=uri) as inner:
        ids = outer.info.run_id, inner.info.run_id
    assert MlflowClient(uri).get_run(ids[1]).data.tags["mlflow.parentRunId"] == ids[0]


def test_log_functions_are_noops_without_run(tmp_path):
    import mlflow

    assert mlflow.active_run() is None
    log_params({"a": 1})
    log_metrics({"a": 1.0})
    log_artifact(tmp_path / "does-not-exist")  # no run: nothing checked, nothing logged
    assert mlflow.active_run() is None


def test_log_artifact_missing_path_raises_inside_run(uri, tmp_path):
    with open_run("test-runs", uri=uri), pytest.raises(FileNotFoundError, match="does-not-exist"):
        log_artifact(tmp_path / "does-not-exist")


@pytest.mark.slow  # SQLite schema migrations: ~5 s idle, 30 s on a loaded 2-core box
def test_embedded_default_sqlite_and_artifact_dir(tmp_path, monkeypatch):
    """No URI anywhere: runs land in <cwd>/runs/mlflow/mlflow.db and artifacts in runs/mlflow/artifacts."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    art = tmp_path / "note.txt"
    art.write_text("hi")
    try:
        with open_run("embedded", params={"a": 1}):
            log_artifact(art)
        assert (tmp_path / "runs" / "mlflow" / "mlflow.db").is_file()
        found = list((tmp_path / "runs" / "mlflow" / "artifacts").rglob("note.txt"))
        assert len(found) == 1 and found[0].read_text() == "hi"
    finally:
        mlflow.set_tracking_uri(None)
