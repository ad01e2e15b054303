"""The local pipeline run and `chromaflow demo` (slow: they train a tiny model end to end)."""

from __future__ import annotations

import shutil

import pytest

from chromaflow import demo, io
from chromaflow.pipeline import run_local


def _eval_numbers(path) -> dict:
    m = io.read_json(path)
    return {"rows": m["rows"], "eval_set": m["eval_set"], **{k: m.get(k) for k in demo.METRIC_KEYS}}


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path, repo_root):
    """Two local pipeline runs with the same seed (separate stores) give identical evaluation metrics."""
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    got = []
    for k in range(2):
        uri = demo._prepare_tracking(tmp_path / f"mlflow{k}", "colorization")
        args = demo.pipeline_arguments(repo_root, params, uri, steps=4)
        out = run_local("colorization", args, root=tmp_path / f"kfp{k}")
        got.append(_eval_numbers(f"{out['evaluation']}/metrics.json"))
    assert got[0] == got[1]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("java (TorchServe's frontend) is not installed")
    res = demo.run_demo(tmp_path / "demo", steps=4)
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "Promotion decision" in report and "data:image/png;base64," in report
    # the shipped model is registered first and becomes champion; the 4-step challenger loses the gates to it
    assert res["seed_decision"]["promoted"] is True
    assert res["decision"]["promoted"] is False and any("FAIL" in r for r in res["decision"]["reasons"])
    assert "The champion on the committed sample" in report
    assert (tmp_path / "demo" / "served.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["serve"]["status"] == 200
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=res["paths"]["mlflow store"])
    mv = client.get_model_version_by_alias("chromaflow-colorization", "champion")
    assert mv.tags.get("metric.auc_rebal") is not None
    from chromaflow.models.shipped import card

    assert str(mv.version) == "1" and mv.tags["chromaflow.weights_sha256"] == card("colorization")["sha256"]
    assert str(tmp_path / "demo" / "mlflow" / "artifacts") in mv.source or mv.run_id
    assert {"pipeline (total)", "total"} <= set(res["timings"])


def test_pipeline_arguments_are_absolute_and_typed(repo_root):
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    args = demo.pipeline_arguments(repo_root, params, "sqlite:////x/mlflow.db", steps=None)
    assert args["source"].startswith("/") and args["gates"].startswith("/")
    assert args["steps"] == params["train"]["steps"] and isinstance(args["width"], float)
    from chromaflow.pipeline import load_pipeline

    inputs = load_pipeline("colorization").component_spec.inputs
    assert set(args) <= set(inputs), f"demo passes unknown pipeline inputs {set(args) - set(inputs)}"
