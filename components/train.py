"""KFP component ``train``: the one training engine (:func:`chromaflow.train.train`), tracked in MLflow.

Any task (``--task colorization|guided|splitbrain|lpips``): the typed inputs are the common flags, ``0`` / ``""``
meaning "the task's own default" (invalid values for these flags; not ``Optional``: the KFP local runner fails
on an unset optional int); ``options`` carries any other flag of the task by its dest name
(``{"variant": "split_cl_cl", "fc_width": 256}``), converted and checked by
:func:`chromaflow.pipeline.train_arguments`. ``stats_dir`` (the ab prior) is for the tasks that take ``--prior``.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    stats_dir: Input[Artifact] = None,
    task: str = "colorization",
    loss: str = "",
    width: float = 0.0,
    steps: int = 80,
    crop: int = 0,
    batch_size: int = 0,
    lr: float = 0.0,
    seed: int = 0,
    options: dict = {},  # noqa: B006 (a KFP parameter default)
    experiment: str = "colorization",
    tracking_uri: str = "",
    pipeline_run_id: str = "",
    launcher: str = "local",
    num_nodes: int = 1,
    gpus_per_node: int = 0,
    image: str = "",
    runtime: str = "torch-distributed",
):
    """Train ``task`` on ``dataset`` (with the ab prior of ``stats_dir`` when given); ``model`` receives
    ``model.safetensors`` (weights + config + Lab contract), ``checkpoint.pt``, ``metrics.json`` and ``history.csv``.

    The engine logs params, losses and artifacts to MLflow ``experiment`` at ``tracking_uri`` (empty:
    ``$MLFLOW_TRACKING_URI`` or the local SQLite default), tagged with the KFP run id.

    ``launcher="local"`` trains in this pod; ``"kubeflow"`` submits a Kubeflow Trainer TrainJob (``runtime``,
    ``num_nodes`` x ``gpus_per_node``, nodes running ``image``: the pipelines pass ``components.GPU_IMAGE``; a
    default in this signature would be an expression the embedded source cannot evaluate) on the artifacts' URLs
    and waits for it.
    """
    import os

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if pipeline_run_id:
        os.environ["CHROMAFLOW_PIPELINE_RUN_ID"] = pipeline_run_id
    from chromaflow.pipeline import train_arguments, train_step

    params = train_arguments(
        task,
        options,
        loss=loss or None,
        width=width or None,
        steps=steps,
        crop=crop or None,
        batch_size=batch_size or None,
        lr=lr or None,
        seed=seed,
        prior=stats_dir.path if stats_dir is not None else None,
    )
    run_name = f"{task}-{params.get('variant', params.get('loss', 'default'))}"
    launch = {} if launcher == "local" else dict(num_nodes=num_nodes, gpus_per_node=gpus_per_node, image=image,
                                                 runtime=runtime)  # fmt: skip
    final = train_step(task, dataset=dataset, model=model, launcher=launcher, experiment=experiment,
                       run_name=run_name, **launch, **params)  # fmt: skip
    model.metadata.update({"task": task, **{k: v for k, v in params.items() if k != "prior"}})
    for k, v in final.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
