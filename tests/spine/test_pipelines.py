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
    images = {k: e["container"]["image"] for k, e in execs.items()}
    assert images.pop("exec-train") == f"chromaflow:{__version__}-cuda", "the GPU task runs the CUDA variant"
    assert set(images.values()) == {f"chromaflow:{__version__}"}, "every CPU task runs the CPU variant"
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


def _dag(name):
    spec, platform = _docs(pipeline.package_path(name))
    tasks = spec["root"]["dag"]["tasks"]
    return spec, platform, tasks, {t: set(v.get("dependentTasks", [])) for t, v in tasks.items()}


def _const(task: dict, name: str):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def test_guided_dag_trains_the_guided_task_and_registers_its_own_model():
    spec, platform, tasks, deps = _dag("guided")
    assert set(tasks) == {"prepare", "stats", "train", "evaluate-guided", "promote", "export"}
    chain = ["prepare", "train", "evaluate-guided", "promote", "export"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in deps[after], f"{after} must run after {before}"
    assert "stats" not in deps["train"], "the guided loss uses no prior: train must not wait for stats"
    assert _const(tasks["train"], "task") == "guided"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["model_name"]["defaultValue"] == "chromaflow-guided"
    assert params["select_metric"]["defaultValue"] == "psnr_at_10_random"
    assert 10 in params["points"]["defaultValue"]
    execs = spec["deploymentSpec"]["executors"]
    acc = execs["exec-train"]["container"]["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu"
    assert "exec-train" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    caching = {t: v["cachingOptions"].get("enableCache", False) for t, v in tasks.items()}
    assert caching["evaluate-guided"] and caching["prepare"] and not caching["train"] and not caching["promote"]


def test_transfer_dag_loops_over_variants_then_combines_and_promotes():
    spec, _, tasks, deps = _dag("transfer")
    loop_name, loop = next((k, v) for k, v in tasks.items() if "parameterIterator" in v)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("variants")
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"train", "transfer"} and "train" in inner["transfer"]["dependentTasks"]
    assert _const(inner["train"], "task") == "splitbrain"
    options = _const(inner["train"], "options")
    assert "variants-loop-item" in options["variant"], "each iteration trains its own variant"
    assert {"combine-transfer", "promote", "prepare"} <= set(tasks)
    assert loop_name in deps["combine-transfer"] and "combine-transfer" in deps["promote"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["model_name"]["defaultValue"] == "chromaflow-splitbrain"


def test_lpips_dag_builds_proxy_data_trains_lin_registers_and_exports_lpips():
    spec, _, tasks, deps = _dag("lpips")
    assert set(tasks) == {"build-proxy-bapps", "train", "evaluate-lpips", "promote", "export"}
    chain = ["build-proxy-bapps", "train", "evaluate-lpips", "promote", "export"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in deps[after], f"{after} must run after {before}"
    source = tasks["export"]["inputs"]["parameters"]["model_uri"]["taskOutputParameter"]
    assert source == {"outputParameterKey": "champion_uri", "producerTask": "promote"}  # the champion after promote
    assert not tasks["export"]["cachingOptions"].get("enableCache", False)
    assert "mar" in spec["root"]["outputDefinitions"]["artifacts"]
    assert _const(tasks["train"], "task") == "lpips"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["variant"]["defaultValue"] == "lin" and params["model_name"]["defaultValue"] == "chromaflow-lpips"


def test_bicyclegan_dag_pairs_trains_evaluates_on_held_out_pairs_promotes_and_exports():
    spec, platform, tasks, deps = _dag("bicyclegan")
    assert set(tasks) == {"prepare-pairs", "train", "evaluate-translation", "promote", "export"}
    chain = ["prepare-pairs", "train", "evaluate-translation", "promote", "export"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in deps[after], f"{after} must run after {before}"
    assert _const(tasks["train"], "task") == "bicyclegan"
    options = tasks["train"]["inputs"]["parameters"]["options"]
    assert "variant" in json.dumps(options) and "beta1" in json.dumps(options)  # the original's Adam, not ch. 2's
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["model_name"]["defaultValue"] == "chromaflow-bicyclegan"
    assert params["eval_split"]["defaultValue"] == "test"  # BSDS500's held-out photos, never the training pairs
    assert params["select_metric"]["defaultValue"] == "frechet_squeezenet"
    execs = spec["deploymentSpec"]["executors"]
    assert execs["exec-train"]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    caching = {t: v["cachingOptions"].get("enableCache", False) for t, v in tasks.items()}
    assert caching["prepare-pairs"] and caching["evaluate-translation"]
    assert not caching["train"] and not caching["promote"] and not caching["export"]


@pytest.mark.parametrize(
    "name", ["chromaflow-guided", "chromaflow-lpips", "chromaflow-splitbrain", "chromaflow-bicyclegan"]
)
def test_each_new_model_has_its_own_gates(repo_root, name):
    from chromaflow.tracking.gates import load_gates

    gates, _ = load_gates(repo_root / "mlflow" / "promotion.yaml", name)
    expected = {"chromaflow-guided": "psnr_at_10_random", "chromaflow-lpips": "lpips_2afc",
                "chromaflow-splitbrain": "transfer_best_top1", "chromaflow-bicyclegan": "frechet_squeezenet"}[name]  # fmt: skip
    assert expected in {g.metric for g in gates}, f"{name} falls back to the default gates"


def test_cli_names_every_pipeline():
    from chromaflow import cli

    for name in pipeline.PIPELINES:
        assert pipeline.load_pipeline(name).name.startswith("chromaflow-")
    assert cli.main(["pipeline", "compile", "--name", "nope"]) == 2


@pytest.mark.parametrize("name", sorted(pipeline.PIPELINES))
def test_every_embedded_component_source_runs_alone(name, repo_root):
    """Each task's program, as KFP writes it into ``ephemeral_component.py`` (the function's source after KFP's
    own imports, nothing of its module), defines its function: a default that names a module constant (the train
    component's ``image = BASE_IMAGE`` did) fails here as it failed the demo's train task, with a NameError."""
    spec = _docs(repo_root / "pipelines" / f"{name}.yaml")[0]
    programs = [
        arg
        for ex in spec["deploymentSpec"]["executors"].values()
        for arg in ex["container"].get("command", [])
        if "import kfp" in arg and "def " in arg
    ]
    assert programs, f"{name}: no embedded component source found"
    for program in programs:
        exec(compile(program, "ephemeral_component.py", "exec"), {"__name__": "ephemeral_component"})  # noqa: S102
