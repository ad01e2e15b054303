"""The ``pipeline`` step: compile the Kubeflow pipelines, run one locally, or submit one to a cluster.

    chromaflow pipeline compile                                   # every pipelines/<name>.py -> <name>.yaml
    chromaflow pipeline run --name colorization --root runs/kfp --arg source=$PWD/data/sample
    chromaflow pipeline submit --name colorization --host https://kfp.example.org --token $TOKEN \\
        --experiment chromaflow --arg width=1.0 --arg steps=450000

Pipelines live in the project's ``pipelines`` package (beside ``components``; both ship in the wheel, and
``src/`` links to them in a checkout). ``run`` uses the KFP local ``SubprocessRunner(use_venv=False)``: each task runs in a
subprocess of this interpreter's environment (relative paths resolve against the current directory; image,
accelerator and volume settings are ignored). ``submit`` sends the compiled YAML with
``kfp.Client.create_run_from_pipeline_package`` (optionally uploading it as a pipeline version first).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# name -> (module in pipelines/, pipeline function). The compiled YAML is pipelines/<name>.yaml.
PIPELINES: dict[str, tuple[str, str]] = {
    "colorization": ("pipelines.colorization", "colorization"),
    "colorization_sweep": ("pipelines.colorization_sweep", "colorization_sweep"),
    "guided": ("pipelines.guided", "guided"),
    "transfer": ("pipelines.transfer", "transfer"),
    "lpips": ("pipelines.lpips", "lpips"),
    "data": ("pipelines.data", "data"),
    "bicyclegan": ("pipelines.bicyclegan", "bicyclegan"),
}


def project_root() -> Path:
    """The source checkout (``params.yaml``, ``data/``) the demo reads: the one the ``pipelines`` package is
    imported from (``src/pipelines`` links to it), else the current directory."""
    import pipelines

    for cand in (Path(pipelines.__file__).resolve().parent.parent, Path.cwd().resolve()):
        if (cand / "params.yaml").is_file() and (cand / "pipelines").is_dir() and (cand / "components").is_dir():
            return cand
    raise FileNotFoundError(
        f"pipeline: no source checkout (params.yaml, pipelines/, components/) in the current directory ({Path.cwd()})"
    )


def load_pipeline(name: str) -> Any:
    """Import the pipeline function ``name`` (a key of :data:`PIPELINES`) from the ``pipelines`` package."""
    if name not in PIPELINES:
        raise ValueError(f"pipeline: unknown pipeline {name!r}; known: {sorted(PIPELINES)}")
    module, func = PIPELINES[name]
    return getattr(importlib.import_module(module), func)


def package_path(name: str) -> Path:
    """Where the compiled YAML of ``name`` is kept: ``pipelines/<name>.yaml`` (package data of ``pipelines``)."""
    if name not in PIPELINES:
        raise ValueError(f"pipeline: unknown pipeline {name!r}; known: {sorted(PIPELINES)}")
    from importlib.resources import files

    return Path(str(files("pipelines") / f"{name}.yaml"))


def compile_pipeline(name: str, out: str | os.PathLike | None = None) -> Path:
    """Compile pipeline ``name`` to ``out`` (default :func:`package_path`), atomically; return the path."""
    from kfp import compiler

    from chromaflow.io import atomic_path

    out = Path(out) if out is not None else package_path(name)
    with atomic_path(out) as tmp:
        final = tmp.with_suffix(".yaml")  # the compiler picks the format from the suffix
        try:
            compiler.Compiler().compile(load_pipeline(name), str(final))
            os.replace(final, tmp)
        finally:
            final.unlink(missing_ok=True)
    log.info("compiled %s -> %s", name, out)
    return out


def parse_arguments(items: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}`` with YAML typing (``steps=80`` int, ``width=0.25`` float, ``losses=[a, b]``)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"pipeline: argument {item!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _coerce(func: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against the pipeline's inputs; turn ints into floats for float inputs."""
    inputs = func.component_spec.inputs or {}
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise ValueError(f"pipeline {func.name!r}: unknown argument(s) {unknown}; inputs: {sorted(inputs)}")
    out = dict(arguments)
    for k, v in arguments.items():
        if inputs[k].type == "Float" and isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
    return out


RUNNERS = ("subprocess", "docker")  # KFP local runners: this environment, or each task in its compiled image


def run_local(
    name: str,
    arguments: Mapping[str, Any] | None = None,
    root: str | os.PathLike = "runs/kfp",
    *,
    runner: str = "subprocess",
) -> dict[str, Any]:
    """Run pipeline ``name`` locally, artifacts under ``root``: ``runner="subprocess"`` (KFP
    ``SubprocessRunner(use_venv=False)``: this interpreter's environment) or ``"docker"`` (KFP ``DockerRunner``:
    every task in its compiled image through ``$DOCKER_HOST``, e.g. ``podman system service``; only ``root`` is
    mounted, at its own path, so inputs must lie under it).

    Returns the pipeline's outputs: artifacts as their local paths, parameters as values. Raises
    ``RuntimeError`` when a task fails (its log is above in the output).
    """
    import kfp.local

    if runner not in RUNNERS:
        raise ValueError(f"pipeline: unknown runner {runner!r}; known: {sorted(RUNNERS)}")
    func = load_pipeline(name)
    args = _coerce(func, arguments or {})
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local_runner = kfp.local.SubprocessRunner(use_venv=False) if runner == "subprocess" else kfp.local.DockerRunner()
    kfp.local.init(runner=local_runner, pipeline_root=str(root), raise_on_error=True)
    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():
            # Said once per task. SubprocessRunner(use_venv=False): our components name the project's image (not
            # a "python" one) and every task runs in this interpreter's environment, which is the image's
            # (DockerRunner honours the image and never says it). Both local runners ignore the cpu/memory/
            # accelerator settings the pipelines declare for clusters. See the module docstring.
            warnings.filterwarnings("ignore", message=r".*custom or non-Python base image", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message=r"Task '.*': settings .* have no effect in the current local")
            task = func(**args)
    except Exception as e:  # kfp raises RuntimeError with the failing task's name
        raise RuntimeError(f"pipeline {name!r} failed locally: {e}") from e
    outputs = {k: getattr(v, "path", v) for k, v in (getattr(task, "outputs", None) or {}).items()}
    log.info("pipeline %s finished locally in %.1fs; artifacts under %s", name, time.monotonic() - t0, root)
    return outputs


def submit(
    host: str,
    name: str = "colorization",
    *,
    package: str | os.PathLike | None = None,
    arguments: Mapping[str, Any] | None = None,
    token: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    upload: bool = False,
) -> dict[str, Any]:
    """Create a run of the compiled ``package`` (default ``pipelines/<name>.yaml``) on the KFP endpoint ``host``.

    ``upload``: first store the package as a pipeline (or a new version of it) named after ``name``.
    Returns ``{"run_id", "experiment", "url", "pipeline_id"}``.
    """
    import kfp

    if not host or not str(host).startswith(("http://", "https://")):
        raise ValueError(f"pipeline submit: --host must be an http(s) URL, got {host!r}")
    package = Path(package) if package is not None else package_path(name)
    if not package.is_file():
        raise FileNotFoundError(
            f"pipeline submit: compiled package {package} not found; run `chromaflow pipeline compile`"
        )
    client = kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow")
    pipeline_id = None
    if upload:
        pipeline_name = f"chromaflow-{name}"
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name).pipeline_id
        else:
            version = time.strftime("%Y%m%d-%H%M%S")
            client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id)
        log.info("uploaded %s as pipeline %s (%s)", package, pipeline_name, pipeline_id)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=dict(arguments or {}),
        run_name=run_name,
        experiment_name=experiment or "chromaflow",
        namespace=namespace,
    )
    url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
    log.info("submitted %s: run %s (%s)", package.name, result.run_id, url)
    return {"run_id": result.run_id, "experiment": experiment or "chromaflow", "url": url, "pipeline_id": pipeline_id}


def select_best(scores: Sequence[float], higher_is_better: bool = True) -> int:
    """Index of the best finite score (first on ties); ``ValueError`` when there is none."""
    finite = [(s if higher_is_better else -s, -i) for i, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        raise ValueError(f"select_best: no finite score among {list(scores)}")
    return -max(finite)[1]


def _switch(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes", "on"):
        return True
    if text in ("false", "0", "0.0", "no", "off", ""):
        return False
    raise ValueError(f"train option {name!r}: expected true/false, got {value!r}")


def _scalar(typ: Any, value: Any, name: str) -> Any:
    if typ is int:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"train option {name!r}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ValueError(f"train option {name!r}: expected an integer, got {value!r}")
        return int(f)
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"train option {name!r}: expected a number, got {value!r}") from None
    if typ is None or typ is str:
        return value if isinstance(value, str) else str(value)
    return typ(value if isinstance(value, str) else str(value))


def _convert(action: argparse.Action, value: Any, name: str) -> Any:
    """``value`` as its flag would parse it (KFP hands dict values over as JSON floats or strings)."""
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return _switch(value, name)
    if action.nargs not in (None, "?"):
        raise ValueError(f"train option {name!r}: list-valued flags are not supported in options")
    out = _scalar(action.type, value, name)
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"train option {name!r}: {out!r} is not one of {list(action.choices)}")
    return out


def train_arguments(task: str, options: Mapping[str, Any] | None = None, **flags: Any) -> dict[str, Any]:
    """Keyword arguments for :func:`chromaflow.train.train` from the ``train`` component's inputs.

    ``flags``: the component's typed inputs (``loss=``, ``width=``, ``prior=`` ...); ``None`` means "not given",
    so the task's own default applies. ``options``: any other flag of the task, by its dest name
    (``{"variant": "split_cl_cl", "fc_width": 256}``). KFP hands a dict over as JSON: ints arrive as floats
    and pipeline parameters placed inside a dict as strings, so every value is converted with its flag's
    type (``"3.0"`` -> 3 for an int flag, ``"true"`` for a switch) and checked against
    its choices. Raises ``ValueError`` for a flag the task does not have (naming the task's flags), a name
    given both as a typed input and in ``options``, or a value its flag rejects.
    """
    from chromaflow.train import cli, tasks

    parser = argparse.ArgumentParser(prog=f"chromaflow train --task {task}", add_help=False)
    cli.add_engine_arguments(parser)
    tasks.load(task).add_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    given = {k: v for k, v in flags.items() if v is not None}
    options = dict(options or {})
    twice = sorted(set(given) & set(options))
    if twice:
        raise ValueError(f"train {task!r}: {twice} given both as component inputs and in options")
    merged = {**given, **options}
    unknown = sorted(set(merged) - set(actions))
    if unknown:
        raise ValueError(f"train {task!r}: the task has no flag(s) {unknown}; its flags: {sorted(actions)}")
    return {k: _convert(actions[k], v, k) for k, v in merged.items()}


def artifact_url(uri: str) -> str:
    """A KFP artifact URI as an fsspec URL a TrainJob's nodes can open (KFP's ``minio://`` store is S3:
    set ``AWS_ENDPOINT_URL`` on the nodes to the MinIO service)."""
    return uri.replace("minio://", "s3://", 1)


def train_step(task: str, *, dataset: Any, model: Any, launcher: str = "local", **kwargs: Any) -> dict[str, Any]:
    """The ``train`` component's call: in this process (``launcher="local"``) on the artifacts' paths, or as a
    Kubeflow Trainer TrainJob (``"kubeflow"``) on their URLs, whose outputs are then copied into ``model.path``.

    ``dataset`` / ``model``: KFP artifacts (``.path``, ``.uri``); ``kwargs``: :func:`chromaflow.train.train`'s.
    The local run logs to MLflow (``chromaflow.runlog``), as ``chromaflow train`` does.
    """
    from chromaflow import runlog
    from chromaflow.tracking import MLFLOW
    from chromaflow.train import remote, train

    if launcher == "local":
        with runlog.using(MLFLOW):
            return train(task, data=dataset.path, out=model.path, **kwargs)
    if launcher != "kubeflow":
        raise ValueError(f"launcher must be 'local' or 'kubeflow', got {launcher!r}")
    out = artifact_url(model.uri).rstrip("/") + "-trainjob"  # not model.uri: KFP uploads model.path there
    final = train(task, data=artifact_url(dataset.uri), out=out, launcher="kubeflow", **kwargs)
    remote.download(out, model.path)
    return final


def lpips_headline(result: Mapping[str, Any], data: str | os.PathLike) -> dict[str, Any]:
    """Top-level scalars of an :func:`chromaflow.evaluate.lpips_eval.evaluate_lpips` result, for the registry.

    ``lpips_2afc`` / ``lpips_jnd``: the 2AFC score and JND mAP (fractions in [0, 1], mean over sets: the
    ``All`` column) of the FIRST trained model (group "LPIPS (trained here)"); ``eval_set``: a fingerprint of
    the evaluation data (the BAPPS manifest's params when it has one, else the val set folders), so the
    promotion gates compare only versions scored on the same data. ``ValueError`` when no trained model
    was scored.
    """
    import hashlib
    import json

    from chromaflow.io import read_json

    trained = [n for n, g in result.get("groups", {}).items() if g == "LPIPS (trained here)"]
    if not trained or trained[0] not in result.get("2afc", {}):
        raise ValueError(
            f"lpips_headline: no trained LPIPS model among the scored rows {sorted(result.get('2afc', {}))}"
        )
    name = trained[0]
    manifest = Path(data) / "manifest.json"
    if manifest.is_file():
        key: Any = read_json(manifest).get("params")
    else:
        key = [str(p.relative_to(data)) for t in ("2afc", "jnd") for p in _sets_or_none(data, t)]
    out = {
        "lpips_2afc": float(result["2afc"][name]["All"]),
        "lpips_model": name,
        "eval_set": hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest(),
    }
    if name in result.get("jnd", {}):
        out["lpips_jnd"] = float(result["jnd"][name]["All"])
    return out


def _sets_or_none(data: str | os.PathLike, task: str) -> list[Path]:
    from chromaflow.data.bapps import list_sets

    try:
        return list_sets(data, task, "val")
    except FileNotFoundError:
        return []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["compile", "run", "submit"], help="what to do")
    parser.add_argument("--name", default=None, help=f"pipeline: {', '.join(PIPELINES)} (compile: all by default)")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="pipeline argument (repeat)")
    parser.add_argument("--root", default="runs/kfp", help="run: local pipeline root for artifacts")
    parser.add_argument(
        "--runner", choices=RUNNERS, default="subprocess", help="run: this environment, or each task in its image"
    )
    parser.add_argument("--out", default=None, help="compile: output YAML (with --name)")
    parser.add_argument("--host", default=None, help="submit: Kubeflow Pipelines endpoint URL")
    parser.add_argument("--token", default=os.environ.get("KFP_TOKEN"), help="submit: bearer token ($KFP_TOKEN)")
    parser.add_argument("--experiment", default=None, help="submit: KFP experiment (default: chromaflow)")
    parser.add_argument("--run-name", default=None, help="submit: run name")
    parser.add_argument("--namespace", default=None, help="submit: namespace (multi-user deployments)")
    parser.add_argument("--package", default=None, help="submit: compiled YAML (default: pipelines/<name>.yaml)")
    parser.add_argument("--upload", action="store_true", help="submit: also store it as a pipeline version")


def main(args: argparse.Namespace) -> int:
    try:
        arguments = parse_arguments(args.arg)
        if args.action == "compile":
            names = [args.name] if args.name else list(PIPELINES)
            for n in names:
                print(compile_pipeline(n, args.out if args.name else None))
        elif args.action == "run":
            for k, v in run_local(args.name or "colorization", arguments, args.root, runner=args.runner).items():
                print(f"{k}: {v}")
        else:
            if not args.host:
                raise ValueError("pipeline submit: --host is required")
            res = submit(
                args.host,
                args.name or "colorization",
                package=args.package,
                arguments=arguments,
                token=args.token,
                experiment=args.experiment,
                run_name=args.run_name,
                namespace=args.namespace,
                upload=args.upload,
            )
            print(f"run {res['run_id']}: {res['url']}")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        log.error("%s", e)
        return 2
    return 0
