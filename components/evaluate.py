"""KFP component ``evaluate``: the Table 2.1 protocol (:func:`chromaflow.evaluate.colorization.evaluate_colorization`)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    stats_dir: Input[Artifact],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
    split: str = "val",
    select_metric: str = "auc_rebal",
    size: int = 256,
    max_images: int = 0,
    t_sweep: str = "",
    classifier_dir: str = "",
) -> float:
    """Evaluate ``model/model.safetensors`` on ``dataset``'s ``split`` (rebalanced AuC with ``stats_dir/prior.npy``).

    ``evaluation`` receives ``metrics.json``, ``report.md``, ``report.html``; the primary model's scalar
    metrics become KFP metrics. Returns ``select_metric`` (e.g. ``auc_rebal``, %) for sweeps to pick by.
    ``max_images`` 0 = all; ``t_sweep`` comma-separated temperatures ('' = no sweep).
    """
    import os
    import shutil

    from chromaflow.evaluate.colorization import evaluate_colorization

    result = evaluate_colorization(
        os.path.join(model.path, "model.safetensors"),
        dataset.path,
        evaluation.path,
        split=split,
        prior=os.path.join(stats_dir.path, "prior.npy"),
        size=size,
        max_images=max_images or None,
        t_sweep=[float(t) for t in t_sweep.split(",") if t.strip()],
        classifier_dir=classifier_dir or None,
    )
    for k in ("auc_raw", "auc_rebal", "class_top1", "psnr", "colorfulness", "chroma", "n_images"):
        if isinstance(result.get(k), (int, float)):
            metrics.log_metric(k, float(result[k]))
    evaluation.metadata.update({"eval_set": result.get("eval_set", ""), "model": model.uri})
    shutil.copyfile(os.path.join(evaluation.path, "report.html"), report_html.path)
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report_md.path)
    if select_metric not in result:
        raise ValueError(f"evaluate: metric {select_metric!r} not in the results (have {sorted(result)})")
    return float(result[select_metric])
