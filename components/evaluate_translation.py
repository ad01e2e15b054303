"""KFP component ``evaluate_translation``: the diversity / realism-proxy / encoding protocol of thesis ch. 4
(:func:`chromaflow.evaluate.translation.evaluate_translation`; CLI ``chromaflow evaluate-translation``)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_translation(
    model: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_md: Output[Markdown],
    classifier_dir: str = "../shared/datasets/squeezenet1_1",
    inputs: int = 100,
    samples: int = 20,
    split: str = "test",
    size: int = 64,
    seed: int = 0,
    select_metric: str = "frechet_squeezenet",
) -> float:
    """Sample ``model/model.safetensors`` (a BicycleGAN) on ``inputs`` held-out pairs of ``dataset``'s ``split``,
    ``samples`` each; ``evaluation`` receives ``metrics.json`` and ``report.md``. Scalar metrics become KFP metrics;
    returns ``select_metric``. ``classifier_dir``: the ImageNet SqueezeNet weights (LPIPS trunk, realism features)."""
    import os
    import shutil

    from chromaflow.evaluate.translation import evaluate_translation as run_evaluate

    result = run_evaluate(
        model.path, dataset.path, evaluation.path, classifier_dir=classifier_dir, inputs=inputs, samples=samples,
        seed=seed, split=split, size=size,
    )  # fmt: skip
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
    evaluation.metadata.update({"eval_set": result.get("eval_set", ""), "model": model.uri})
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report_md.path)
    if not isinstance(result.get(select_metric), (int, float)):
        raise ValueError(f"evaluate_translation: metric {select_metric!r} not in the results (have {sorted(result)})")
    return float(result[select_metric])
