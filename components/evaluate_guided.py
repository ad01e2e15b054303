"""KFP component ``evaluate_guided``: the user-guided protocol, PSNR vs revealed points
(:func:`chromaflow.evaluate.guided.psnr_sweep`; CLI ``chromaflow evaluate --task guided``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_guided(
    model: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report_md: Output[Markdown],
    plot: Output[HTML],
    points: list = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500],  # noqa: B006 (a KFP parameter default)
    placements: list = ["random", "oracle"],  # noqa: B006
    patch: int = 7,
    size: int = 256,
    split: str = "val",
    max_images: int = 50,
    seed: int = 0,
    levin: bool = True,
    select_metric: str = "psnr_at_10_random",
) -> float:
    """Sweep ``model/model.safetensors`` (a siggraph17 network) over ``points`` revealed ``patch`` x ``patch``
    hints on ``dataset``'s ``split``; ``evaluation`` receives ``metrics.json``, ``report.md`` and
    ``psnr_vs_points.png`` (also as the ``plot`` page). Top-level scalars (``psnr_auto_guided``,
    ``psnr_at_<N>_<placement>``, dB) become KFP metrics; returns ``select_metric``. ``max_images`` 0 = all.
    """
    import os
    import shutil

    from chromaflow.evaluate.guided import psnr_sweep
    from chromaflow.evaluate.report import html_page, png_data_uri

    result = psnr_sweep(
        os.path.join(model.path, "model.safetensors"),
        dataset.path,
        evaluation.path,
        points=tuple(int(n) for n in points),
        patch=patch,
        size=size,
        split=split,
        max_images=max_images or None,
        seed=seed,
        placements=tuple(str(p) for p in placements),
        levin=levin,
    )
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
    evaluation.metadata.update({"eval_set": result.get("eval_set", ""), "model": model.uri})
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report_md.path)
    with open(os.path.join(evaluation.path, "psnr_vs_points.png"), "rb") as f:
        img = f"<img alt='PSNR vs points' src='{png_data_uri(f.read())}'>"
    with open(plot.path, "w", encoding="utf-8") as f:
        f.write(html_page("PSNR vs revealed points (thesis Fig. 3.6)", [("Curves", img)]))
    if select_metric not in result:
        raise ValueError(f"evaluate_guided: metric {select_metric!r} not in the results (have {sorted(result)})")
    return float(result[select_metric])
