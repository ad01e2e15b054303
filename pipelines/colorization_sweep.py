"""The colorization hyper-parameter sweep: one train + evaluate per loss (ParallelFor), the best by a metric
is promoted and exported.

    prepare -> stats -> ParallelFor(loss in losses){train -> evaluate} -> select_best -> promote -> export

The losses are the thesis's Table 2.1 comparison (ch. 2): rebalanced classification (``rebalanced``, the
full method), plain soft-encoded classification (``softce``) and L2 regression (``l2``).

    chromaflow pipeline run --name colorization_sweep --arg source=$PWD/data/sample
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components.prepare import prepare
from components.select_best import select_best
from components.stats import stats
from pipelines.common import cache, export_step, promote_step, train_and_evaluate


class Outputs(NamedTuple):
    evaluation: Artifact
    decision: Artifact
    mar: Model


@dsl.pipeline(name="chromaflow-colorization-sweep", description="Colorization loss sweep; best by metric promoted")
def colorization_sweep(
    source: str = "data/sample",
    max_side: int = 256,
    val_fraction: float = 0.4,
    losses: list = ["rebalanced", "softce", "l2"],  # noqa: B006 (a KFP pipeline parameter default)
    width: float = 0.0625,
    steps: int = 80,
    crop: int = 64,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    eval_size: int = 128,
    select_metric: str = "auc_rebal",
    higher_is_better: bool = True,
    model_name: str = "chromaflow-colorization",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "colorization-sweep",
    tracking_uri: str = "",
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    prep = cache(prepare(source=source, max_side=max_side, val_fraction=val_fraction), "prepare")
    st = cache(stats(dataset=prep.outputs["dataset"]), "stats")
    with dsl.ParallelFor(losses, parallelism=1) as loss:
        tr, ev = train_and_evaluate(
            prep, st, loss=loss, select_metric=select_metric, eval_size=eval_size, run_id=run_id, width=width,
            steps=steps, crop=crop, batch_size=batch_size, lr=lr, seed=seed, experiment=experiment,
            tracking_uri=tracking_uri,
        )  # fmt: skip
    best = select_best(
        scores=dsl.Collected(ev.outputs["Output"]),
        models=dsl.Collected(tr.outputs["model"]),
        evaluations=dsl.Collected(ev.outputs["evaluation"]),
        metric=select_metric,
        higher_is_better=higher_is_better,
    )
    cache(best, "select_best")
    pr = promote_step(
        best.outputs["best_model"],
        best.outputs["best_evaluation"],
        model_name=model_name,
        gates=gates,
        experiment=experiment,
        tracking_uri=tracking_uri,
        run_id=run_id,
    )
    ex = export_step(pr, tracking_uri)
    return Outputs(evaluation=best.outputs["best_evaluation"], decision=pr.outputs["decision"], mar=ex.outputs["mar"])
