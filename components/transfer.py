"""KFP component ``transfer``: linear probes on the frozen conv1..conv5 features of one trained model
(:func:`chromaflow.evaluate.transfer.transfer`; CLI ``chromaflow transfer``)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def transfer(
    model: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_md: Output[Markdown],
    label: str = "",
    classes: int = 0,
    train_per_class: int = 0,
    val_per_class: int = 0,
    size: int = 64,
    target_dim: int = 9216,
    wd: list = [0.001, 0.01, 0.1],  # noqa: B006 (a KFP parameter default)
    max_iter: int = 200,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Probe ``model/model.safetensors`` (row ``label``, default the model's task metadata) on the labelled
    ``dataset`` (train split fits, val split scores); ``evaluation`` receives ``metrics.json``, ``report.*``,
    ``transfer.png`` and the feature cache. ``classes`` / ``*_per_class`` 0 = all. Returns
    ``transfer_best_top1`` (top-1 % of the best layer)."""
    import os
    import shutil

    from chromaflow.evaluate.transfer import LAYERS
    from chromaflow.evaluate.transfer import transfer as run_transfer

    name = label or str(model.metadata.get("variant", "model"))
    result = run_transfer({name: os.path.join(model.path, "model.safetensors")}, dataset.path, evaluation.path,
                          classes=classes or None, train_per_class=train_per_class or None,
                          val_per_class=val_per_class or None, size=size, target_dim=target_dim,
                          wd=[float(v) for v in wd], max_iter=max_iter, batch_size=batch_size, seed=seed)  # fmt: skip
    metrics.log_metric("transfer_best_top1", float(result["transfer_best_top1"]))
    for layer in LAYERS:
        metrics.log_metric(f"transfer_{layer}_top1", float(result["rows"][name][layer]))
    evaluation.metadata.update({"label": name, "best_layer": result["best"][name]["layer"]})
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report_md.path)
    return float(result["transfer_best_top1"])
