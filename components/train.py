"""KFP component ``train``: the one training engine (:func:`chromaflow.train.train`), tracked in MLflow."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    stats_dir: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    task: str = "colorization",
    loss: str = "rebalanced",
    width: float = 0.0625,
    steps: int = 80,
    crop: int = 64,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    experiment: str = "colorization",
    tracking_uri: str = "",
    pipeline_run_id: str = "",
):
    """Train ``task`` on ``dataset`` with the ab prior of ``stats_dir``; ``model`` receives ``model.safetensors``
    (weights + config + Lab contract), ``checkpoint.pt``, ``metrics.json`` and ``history.csv``.

    The engine logs params, losses and artifacts to MLflow ``experiment`` at ``tracking_uri`` (empty:
    ``$MLFLOW_TRACKING_URI`` or the local SQLite default), tagged with the KFP run id.
    """
    import os

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if pipeline_run_id:
        os.environ["CHROMAFLOW_PIPELINE_RUN_ID"] = pipeline_run_id
    from chromaflow.train import train as run_train

    params = {"loss": loss, "width": width, "steps": steps, "crop": crop, "batch_size": batch_size, "lr": lr}
    final = run_train(
        task,
        data=dataset.path,
        prior=stats_dir.path,
        out=model.path,
        seed=seed,
        experiment=experiment,
        run_name=f"{task}-{loss}",
        **params,
    )
    model.metadata.update({"task": task, "seed": seed, **params})
    for k, v in final.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
