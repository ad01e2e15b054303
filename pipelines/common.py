"""Task settings shared by the pipelines: GPU training resources and caching policy.

Caching is on only for the deterministic steps (prepare, stats, evaluate, and the data/table steps
build_proxy_bapps and combine_transfer; the evaluate_guided / evaluate_lpips / transfer tasks are cached as
"evaluate"). ``train`` is seeded and bit-exact on
CPU, but bf16/cuDNN kernels on a GPU are not, so it is never served from cache; ``promote`` and ``export``
have side effects on the MLflow registry and must always run.

GPU training requests one ``nvidia.com/gpu`` (``set_accelerator_type/limit``, kfp core) and mounts a
memory-backed ``emptyDir`` at ``/dev/shm`` for DataLoader workers (the default 64 MB shm of a pod is too small).
kfp-kubernetes is not installed here, so the mount is written as the raw Kubernetes platform config that
``kfp.kubernetes.empty_dir_mount(task, "dshm", "/dev/shm", medium="Memory", size_limit=...)`` produces: it lands
in the compiled YAML's ``platforms.kubernetes.deploymentSpec.executors.<exec>.emptyDirMounts`` and the KFP
backend (>= 2.1) honours it. The local runner ignores both accelerator and volume settings.
"""

from __future__ import annotations

from kfp.dsl import PipelineTask

from components import GPU_IMAGE
from components.evaluate import evaluate
from components.export import export
from components.promote import promote
from components.train import train

DETERMINISTIC = {
    "prepare", "stats", "evaluate", "build_proxy_bapps", "combine_transfer", "part_list", "prepare_merge", "stats_merge"
}  # fmt: skip
DATA_PART_RETRIES = 2  # a preempted or failed data part runs again (it writes the same bytes)
GPU_TYPE = "nvidia.com/gpu"
SHM_SIZE = "8Gi"


def cache(task: PipelineTask, step: str) -> PipelineTask:
    """Caching on for deterministic steps, off otherwise (see module docstring)."""
    return task.set_caching_options(step in DETERMINISTIC)


def gpu_training(task: PipelineTask, *, gpus: int = 1, cpu: str = "8", memory: str = "32G") -> PipelineTask:
    """Request ``gpus`` accelerators, CPU/memory limits and a ``/dev/shm`` emptyDir for ``task``; run it in
    :data:`components.GPU_IMAGE`."""
    task.set_accelerator_type(GPU_TYPE).set_accelerator_limit(gpus)
    task.container_spec.image = GPU_IMAGE  # the CUDA variant of the image (the component declares the CPU one)
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    mount = {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": SHM_SIZE}
    k8s = task.platform_config.setdefault("kubernetes", {})
    k8s.setdefault("emptyDirMounts", []).append(mount)
    return task


def data_part(task: PipelineTask, *, cpu: str = "2", memory: str = "4G") -> PipelineTask:
    """A ``prepare``/``stats`` part task: CPU and memory requests (so parts spread over nodes) and retries.
    4G: a stats part holds a 2^24 int64 RGB histogram (128 MiB) and decoded row groups; prepare one batch."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    return task.set_retry(num_retries=DATA_PART_RETRIES, backoff_duration="30s")


def promote_step(
    model: object, evaluation: object, *, model_name: str, gates: str, experiment: str, tracking_uri: str, run_id: str
) -> PipelineTask:
    """The ``promote`` task every pipeline ends with: register ``model`` as challenger, apply ``gates`` (uncached)."""
    task = promote(
        model=model,
        evaluation=evaluation,
        model_name=model_name,
        gates=gates,
        experiment=experiment,
        tracking_uri=tracking_uri,
        pipeline_run_id=run_id,
    )
    return cache(task, "promote")


def train_and_evaluate(
    prep: PipelineTask,
    st: PipelineTask,
    *,
    loss: object,
    select_metric: str,
    eval_size: int,
    run_id: str,
    **train_args: object,
) -> tuple[PipelineTask, PipelineTask]:
    """The colorization ``train`` (GPU resources, uncached) -> ``evaluate`` (cached) pair on the outputs of
    ``prepare`` and ``stats``; ``train_args``: the train component's other inputs (width, steps, crop, ...)."""
    tr = train(
        dataset=prep.outputs["dataset"], stats_dir=st.outputs["stats_dir"], loss=loss, pipeline_run_id=run_id,
        image=GPU_IMAGE, **train_args,
    )  # fmt: skip
    gpu_training(cache(tr, "train"))
    ev = evaluate(
        model=tr.outputs["model"], dataset=prep.outputs["dataset"], stats_dir=st.outputs["stats_dir"],
        select_metric=select_metric, size=eval_size,
    )  # fmt: skip
    return tr, cache(ev, "evaluate")


def export_step(promoted: PipelineTask, tracking_uri: str) -> PipelineTask:
    """The ``export`` task after a promote: the TorchServe archive of the champion it leaves (uncached)."""
    return cache(export(model_uri=promoted.outputs["champion_uri"], tracking_uri=tracking_uri), "export")
