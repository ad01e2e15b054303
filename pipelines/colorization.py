"""The colorization pipeline (thesis ch. 2): prepare -> stats -> train -> evaluate -> promote -> export.

Every task is a component from ``components/`` (same function as the CLI and the DVC stage). Defaults are
the committed-sample settings of ``params.yaml`` (a tiny width-1/16 model, ~80 steps at 64 px); pass bigger
ones for a real run:

    chromaflow pipeline compile --name colorization
    chromaflow pipeline run --name colorization --arg source=$PWD/data/sample
    chromaflow pipeline submit --name colorization --host https://kfp.example.org \\
        --arg source=gs://bucket/imagenet --arg width=1.0 --arg steps=450000 --arg crop=176 --arg batch_size=40
    # training on 2 nodes x 8 GPUs through Kubeflow Trainer (a TrainJob on runtime torch-distributed):
    chromaflow pipeline submit --name colorization ... --arg launcher=kubeflow --arg num_nodes=2 --arg gpus_per_node=8

Outputs: ``evaluation`` (metrics.json + reports), ``decision`` (promotion JSON), ``mar`` (the exported
TorchServe archive of the ``champion`` after the decision).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components.prepare import prepare
from components.stats import stats
from pipelines.common import cache, export_step, promote_step, train_and_evaluate


class Outputs(NamedTuple):
    evaluation: Artifact
    decision: Artifact
    mar: Model


@dsl.pipeline(name="chromaflow-colorization", description="Automatic colorization (Zhang 2018, ch. 2), end to end")
def colorization(
    source: str = "data/sample",
    max_side: int = 256,
    val_fraction: float = 0.4,
    loss: str = "rebalanced",
    width: float = 0.0625,
    steps: int = 80,
    crop: int = 64,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    eval_size: int = 128,
    select_metric: str = "auc_rebal",
    model_name: str = "chromaflow-colorization",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "colorization",
    tracking_uri: str = "",
    launcher: str = "local",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    prep = cache(prepare(source=source, max_side=max_side, val_fraction=val_fraction), "prepare")
    st = cache(stats(dataset=prep.outputs["dataset"]), "stats")
    tr, ev = train_and_evaluate(
        prep, st, loss=loss, select_metric=select_metric, eval_size=eval_size, run_id=run_id, width=width,
        steps=steps, crop=crop, batch_size=batch_size, lr=lr, seed=seed, experiment=experiment,
        tracking_uri=tracking_uri, launcher=launcher, num_nodes=num_nodes, gpus_per_node=gpus_per_node,
    )  # fmt: skip
    pr = promote_step(
        tr.outputs["model"],
        ev.outputs["evaluation"],
        model_name=model_name,
        gates=gates,
        experiment=experiment,
        tracking_uri=tracking_uri,
        run_id=run_id,
    )
    ex = export_step(pr, tracking_uri)
    return Outputs(evaluation=ev.outputs["evaluation"], decision=pr.outputs["decision"], mar=ex.outputs["mar"])
