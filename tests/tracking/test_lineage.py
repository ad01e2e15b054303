"""Lineage helpers against independent computations (hashlib, json, git)."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from chromaflow.tracking import lineage


def test_params_hash_is_sha256_of_canonical_json():
    params = {"b": [1, 2], "a": {"y": 1.5, "x": "s"}}
    expected = hashlib.sha256(b'{"a":{"x":"s","y":1.5},"b":[1,2]}').hexdigest()
    assert lineage.params_hash(params) == expected
    assert lineage.params_hash({"a": {"x": "s", "y": 1.5}, "b": [1, 2]}) == expected  # order-free
    assert lineage.params_hash({"a": 1}) != lineage.params_hash({"a": 2})
    assert lineage.params_hash(None) == hashlib.sha256(b"{}").hexdigest()


def test_data_hash_prefers_manifest_fingerprint(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "f00d", "counts": {"train": 3}}))
    (tmp_path / "other.bin").write_bytes(b"x" * 10)
    expected = hashlib.md5(b"manifest:f00d").hexdigest()
    assert lineage.data_hash(tmp_path) == expected
    assert lineage.data_hash(tmp_path / "manifest.json") == expected
    (tmp_path / "other.bin").write_bytes(b"y" * 10)  # the fingerprint is the identity
    assert lineage.data_hash(tmp_path) == expected


def test_data_hash_uses_dvc_lock(tmp_path):
    (tmp_path / "dvc.lock").write_bytes(b"schema: '2.0'\nstages: {}\n")
    expected = hashlib.md5(b"dvc.lock:schema: '2.0'\nstages: {}\n").hexdigest()
    assert lineage.data_hash(tmp_path) == expected
    assert lineage.data_hash(tmp_path / "dvc.lock") == expected


def test_data_hash_of_listing_and_small_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "sub" / "b.txt").write_bytes(b"world!")
    h = hashlib.md5()
    h.update(b"a.txt\x005\x00hello")
    h.update(b"sub/b.txt\x006\x00world!")
    assert lineage.data_hash(tmp_path) == h.hexdigest()
    before = lineage.data_hash(tmp_path)
    (tmp_path / "sub" / "b.txt").write_bytes(b"World!")  # same size, other content
    assert lineage.data_hash(tmp_path) != before
    (tmp_path / "sub" / "b.txt").rename(tmp_path / "sub" / "c.txt")
    assert lineage.data_hash(tmp_path) != before


def test_data_hash_of_several_inputs_hashes_them_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, fp in ((a, "aa"), (b, "bb")):
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"fingerprint": fp}))
    ha, hb = hashlib.md5(b"manifest:aa").hexdigest(), hashlib.md5(b"manifest:bb").hexdigest()
    assert lineage.data_hash([a, b]) == hashlib.md5((ha + hb).encode()).hexdigest()
    assert lineage.data_hash([b, a]) != lineage.data_hash([a, b])  # order is part of the identity
    assert lineage.data_hash([a]) == ha  # one input: its own hash, as without a list
    assert lineage.lineage_tags(data=[a, b])["chromaflow.data_hash"] == lineage.data_hash([a, b])
    with pytest.raises(FileNotFoundError, match="nope"):
        lineage.data_hash([a, tmp_path / "nope"])


def test_data_hash_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        lineage.data_hash(tmp_path / "nope")


def test_git_commit_inside_and_outside_git(tmp_path, repo_root):
    assert lineage.git_commit(tmp_path) == ("unknown", "unknown")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True)
    sha, dirty = lineage.git_commit(repo_root)
    if head.returncode == 0:
        assert sha == head.stdout.strip() and dirty in ("true", "false")
    else:  # a repository without commits yet
        assert (sha, dirty) == ("unknown", "unknown")


def test_git_commit_dirty_flag(tmp_path):
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f").write_text("1")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert lineage.git_commit(tmp_path) == (sha, "false")
    (tmp_path / "f").write_text("2")
    assert lineage.git_commit(tmp_path) == (sha, "true")


def test_pipeline_run_id(monkeypatch):
    monkeypatch.delenv(lineage.PIPELINE_ENV, raising=False)
    assert lineage.pipeline_run_id() == "local"
    monkeypatch.setenv(lineage.PIPELINE_ENV, "kfp-42")
    assert lineage.pipeline_run_id() == "kfp-42"
    assert lineage.pipeline_run_id("explicit") == "explicit"
    tags = lineage.lineage_tags({"a": 1})
    assert tags["chromaflow.pipeline_run_id"] == "kfp-42" and tags["chromaflow.data_hash"] == "none"


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    from chromaflow.tracking import tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/runs/mlflow/mlflow.db"
    assert (tmp_path / "runs" / "mlflow").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri() == "http://127.0.0.1:5999"
    assert tracking_uri("http://other:1") == "http://other:1"
