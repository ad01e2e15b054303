"""Pipelines: compiled YAML is fresh, the DAG/caching/resources are as declared, submit sends the right requests."""

from __future__ import annotations

import json

import pytest
import yaml

from chromaflow import __version__, pipeline

STEPS = ["prepare", "stats", "train", "evaluate", "promote", "export"]


def _docs(path):
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


@pytest.mark.parametrize("name", sorted(pipeline.PIPELINES))
def test_compiled_yaml_is_fresh(name, tmp_path):
    fresh = pipeline.compile_pipeline(name, tmp_path / f"{name}.yaml")
    kept = pipeline.package_path(name)
    assert kept.is_file(), f"{kept} missing: run `chromaflow pipeline compile`"
    assert fresh.read_text() == kept.read_text(), f"{kept} is stale: run `chromaflow pipeline compile`"


def test_colorization_dag_caching_and_resources():
    spec, platform = _docs(pipeline.package_path("colorization"))
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    deps = {t: set(v.get("dependentTasks", [])) for t, v in tasks.items()}
    for before, after in zip(STEPS, STEPS[1:], strict=False):
        assert before in deps[after], f"{after} must run after {before}"
    caching = {t: v["cachingOptions"].get("enableCache", False) for t, v in tasks.items()}
    assert caching == {
        "prepare": True,
        "stats": True,
        "evaluate": True,
        "train": False,
        "promote": False,
        "export": False,
    }
    execs = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in execs.values()} == {f"chromaflow:{__version__}"}
    acc = execs["exec-train"]["container"]["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu" and int(acc["resourceCount"]) == 1
    assert not any("accelerator" in e["container"].get("resources", {}) for k, e in execs.items() if k != "exec-train")
    shm = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["emptyDirMounts"]
    assert shm == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "8Gi", "volumeName": "dshm"}]


def test_sweep_has_parallel_for_over_losses_and_selects():
    spec, _ = _docs(pipeline.package_path("colorization_sweep"))
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(v for v in tasks.values() if "iterator" in v or "parameterIterator" in v)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("losses")
    assert spec["root"]["inputDefinitions"]["parameters"]["losses"]["defaultValue"] == ["rebalanced", "softce", "l2"]
    assert {"select-best", "promote", "export"} <= set(tasks)
    assert "select-best" in tasks["promote"]["dependentTasks"]


@pytest.mark.parametrize(
    ("scores", "higher", "best"),
    [([1.0, 3.0, 2.0], True, 1), ([1.0, 3.0, 2.0], False, 0), ([float("nan"), 0.5, 0.5], True, 1)],
)
def test_select_best(scores, higher, best):
    assert pipeline.select_best(scores, higher_is_better=higher) == best


def test_select_best_rejects_no_finite_score():
    with pytest.raises(ValueError, match="no finite score"):
        pipeline.select_best([float("nan")])


def test_parse_arguments_types_and_errors():
    got = pipeline.parse_arguments(["steps=80", "width=0.25", "losses=[l2, softce]", "source=data/sample", "x="])
    assert got == {"steps": 80, "width": 0.25, "losses": ["l2", "softce"], "source": "data/sample", "x": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        pipeline.parse_arguments(["steps"])


def test_unknown_pipeline_and_argument_are_named():
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        pipeline.load_pipeline("nope")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['stepz'\]"):
        pipeline._coerce(pipeline.load_pipeline("colorization"), {"stepz": 3})


def test_submit_sends_pipeline_spec_and_parameters(fake_kfp, tmp_path):
    url, calls = fake_kfp
    res = pipeline.submit(
        url, "colorization", arguments={"steps": 120, "width": 0.25}, token="t0k", experiment="exp", upload=True
    )
    assert res["run_id"] == "run-1" and res["pipeline_id"] == "pipe-1"
    paths = [(c["method"], c["path"]) for c in calls]
    assert ("POST", "/apis/v2beta1/pipelines/upload") in paths
    assert ("POST", "/apis/v2beta1/experiments") in paths
    run = next(c for c in calls if (c["method"], c["path"]) == ("POST", "/apis/v2beta1/runs"))
    assert run["headers"].get("authorization") == "Bearer t0k"
    body = json.loads(run["body"])
    assert body["experiment_id"] == "exp-1"
    spec = body["pipeline_spec"]["pipeline_spec"]  # with its platform spec (the /dev/shm mount) beside it
    assert spec["pipelineInfo"]["name"] == "chromaflow-colorization"
    assert "emptyDirMounts" in json.dumps(body["pipeline_spec"]["platform_spec"])
    assert set(spec["root"]["dag"]["tasks"]) == set(STEPS)
    assert body["runtime_config"]["parameters"] == {"steps": 120, "width": 0.25}
    exp = next(c for c in calls if (c["method"], c["path"]) == ("POST", "/apis/v2beta1/experiments"))
    assert json.loads(exp["body"])["display_name"] == "exp"
    upload = next(c for c in calls if c["path"].endswith("/pipelines/upload"))
    assert b"chromaflow-colorization" in upload["body"] and b"pipelineInfo" in upload["body"]


def test_submit_rejects_bad_host_and_missing_package(tmp_path):
    with pytest.raises(ValueError, match="http"):
        pipeline.submit("kfp.example.org")
    with pytest.raises(FileNotFoundError, match="not found"):
        pipeline.submit("http://127.0.0.1:9", package=tmp_path / "none.yaml")
