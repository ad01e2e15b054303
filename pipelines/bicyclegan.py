"""The BicycleGAN pipeline (thesis ch. 4): prepare_pairs -> train (task ``bicyclegan``) -> evaluate_translation
(diversity, realism proxies, reconstruction) -> promote (``chromaflow-bicyclegan``) -> export.

``prepare_pairs`` pairs every annotator's boundary map with its photo (``pairs="edges"``, BSDS500 layout) or a
photo's L with the photo (``"gray"``); the evaluation samples held-out ``eval_split`` pairs (BSDS500's own test
split). The promotion gates are the ``chromaflow-bicyclegan`` section of ``mlflow/promotion.yaml``. Defaults are
committed-sample sized (the 16-photo ``data/bsds-sample``, a width-1/8 network, 40 steps at 64 px, 4 inputs x 4
samples); the thesis's protocol and the original's optimizer on the full set:

    chromaflow pipeline run --name bicyclegan
    chromaflow pipeline submit --name bicyclegan --host https://kfp.example.org \\
        --arg source=gs://bucket/bsds500 --arg max_side=286 --arg size=256 --arg width=1.0 --arg steps=200000 \\
        --arg eval_inputs=100 --arg eval_samples=20
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components import GPU_IMAGE
from components.evaluate_translation import evaluate_translation
from components.prepare_pairs import prepare_pairs
from components.train import train
from pipelines.common import cache, export_step, gpu_training, promote_step


class Outputs(NamedTuple):
    evaluation: Artifact
    decision: Artifact
    mar: Model


@dsl.pipeline(name="chromaflow-bicyclegan", description="BicycleGAN multimodal translation (Zhang 2018, ch. 4)")
def bicyclegan(
    source: str = "data/bsds-sample",
    pairs: str = "edges",
    max_side: int = 128,
    variant: str = "bicyclegan",
    nz: int = 8,
    where_add: str = "all",
    encoder: str = "resnet",
    width: float = 0.125,
    size: int = 64,
    steps: int = 40,
    batch_size: int = 2,
    lr: float = 2e-4,
    seed: int = 0,
    eval_inputs: int = 4,
    eval_samples: int = 4,
    eval_split: str = "test",
    classifier_dir: str = "../shared/datasets/squeezenet1_1",
    select_metric: str = "frechet_squeezenet",
    model_name: str = "chromaflow-bicyclegan",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "bicyclegan",
    tracking_uri: str = "",
    launcher: str = "local",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    prep = cache(prepare_pairs(source=source, pairs=pairs, max_side=max_side), "prepare")
    tr = train(
        dataset=prep.outputs["dataset"],
        task="bicyclegan",
        width=width,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        # the original's Adam (betas 0.5, 0.999, no weight decay); the engine's defaults are ch. 2's
        options={
            "variant": variant,
            "nz": nz,
            "where_add": where_add,
            "encoder": encoder,
            "size": size,
            "beta1": 0.5,
            "beta2": 0.999,
            "weight_decay": 0.0,
        },  # fmt: skip
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
        evaluate_translation(
            model=tr.outputs["model"],
            dataset=prep.outputs["dataset"],
            classifier_dir=classifier_dir,
            inputs=eval_inputs,
            samples=eval_samples,
            split=eval_split,
            size=size,
            seed=seed,
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
