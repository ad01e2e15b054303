"""The user-guided colorization pipeline (thesis ch. 3): prepare -> train (task ``guided``) -> evaluate_guided
(PSNR vs revealed points) -> promote (``chromaflow-guided``) -> export; stats beside train.

``stats`` writes the dataset's ab prior and plots as a data report (cached); the guided loss (Huber on ab
plus the distribution side-head) uses no class rebalancing (ch. 3.3), so ``train`` does not read it. The
promotion gates are the ``chromaflow-guided`` section of ``mlflow/promotion.yaml`` (PSNR at 10 random points,
and the automatic, 0-point PSNR). Defaults are committed-sample sized (a width-1/16 siggraph17, 80 steps at
64 px); for a real run:

    chromaflow pipeline run --name guided --arg source=$PWD/data/sample
    chromaflow pipeline submit --name guided --host https://kfp.example.org \\
        --arg source=gs://bucket/imagenet --arg width=1.0 --arg steps=200000 --arg crop=176 --arg batch_size=25
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components import GPU_IMAGE
from components.evaluate_guided import evaluate_guided
from components.prepare import prepare
from components.stats import stats
from components.train import train
from pipelines.common import cache, export_step, gpu_training, promote_step


class Outputs(NamedTuple):
    evaluation: Artifact
    decision: Artifact
    mar: Model


@dsl.pipeline(name="chromaflow-guided", description="User-guided colorization (Zhang 2018, ch. 3), end to end")
def guided(
    source: str = "data/sample",
    max_side: int = 256,
    val_fraction: float = 0.2,
    width: float = 0.0625,
    steps: int = 80,
    crop: int = 64,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    global_hints: bool = False,
    dist_weight: float = 1.0,
    points: list = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500],  # noqa: B006 (a KFP pipeline parameter default)
    placements: list = ["random", "oracle"],  # noqa: B006
    eval_size: int = 128,
    eval_images: int = 50,
    levin: bool = True,
    select_metric: str = "psnr_at_10_random",
    model_name: str = "chromaflow-guided",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "guided",
    tracking_uri: str = "",
    launcher: str = "local",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    prep = cache(prepare(source=source, max_side=max_side, val_fraction=val_fraction), "prepare")
    cache(stats(dataset=prep.outputs["dataset"]), "stats")
    tr = train(
        dataset=prep.outputs["dataset"],
        task="guided",
        width=width,
        steps=steps,
        crop=crop,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        options={"global_hints": global_hints, "dist_weight": dist_weight},
        experiment=experiment,
        tracking_uri=tracking_uri,
        pipeline_run_id=run_id,
        launcher=launcher,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        image=GPU_IMAGE,
    )
    gpu_training(cache(tr, "train"))
    ev = cache(
        evaluate_guided(
            model=tr.outputs["model"],
            dataset=prep.outputs["dataset"],
            points=points,
            placements=placements,
            size=eval_size,
            max_images=eval_images,
            seed=seed,
            levin=levin,
            select_metric=select_metric,
        ),
        "evaluate",
    )
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
