"""KFP component ``evaluate_lpips``: 2AFC and JND scores on BAPPS (real or proxy)
(:func:`chromaflow.evaluate.lpips_eval.evaluate_lpips`; CLI ``chromaflow evaluate --task lpips``)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_lpips(
    model: Input[Model],
    bapps: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_md: Output[Markdown],
    trunks: dict = {},  # noqa: B006 (a KFP parameter default)
    batch_size: int = 50,
    gallery: int = 6,
) -> float:
    """Score the trained ``model/model.safetensors`` beside the low-level metrics (and, per ``trunks`` entry
    ``{net: state_dict path | "random"}``, the untrained and official-lin LPIPS) on every val set of ``bapps``.

    ``evaluation`` receives ``metrics.json`` (the library's result plus the top-level ``lpips_2afc``,
    ``lpips_jnd`` and ``eval_set`` of :func:`chromaflow.pipeline.lpips_headline`, which the registry
    records), ``report.md`` and ``gallery.png``. Returns ``lpips_2afc`` (2AFC score of the trained model,
    fraction in [0, 1]).
    """
    import os
    import shutil

    from chromaflow.evaluate.lpips_eval import evaluate_lpips as run_eval
    from chromaflow.io import write_json
    from chromaflow.pipeline import lpips_headline

    weights = os.path.join(model.path, "model.safetensors")
    result = run_eval(bapps.path, evaluation.path, trunks={str(k): str(v) for k, v in trunks.items()},
                      weights=[weights], batch_size=batch_size, gallery=gallery)  # fmt: skip
    headline = lpips_headline(result, bapps.path)
    write_json(os.path.join(evaluation.path, "metrics.json"), {**result, **headline})
    for k, v in headline.items():
        if isinstance(v, float):
            metrics.log_metric(k, v)
    evaluation.metadata.update({"eval_set": headline["eval_set"], "proxy": bool(result.get("proxy"))})
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report_md.path)
    return headline["lpips_2afc"]
