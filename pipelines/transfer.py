"""The split-brain transfer pipeline (thesis ch. 5): prepare (a LABELLED source) -> ParallelFor(variant){train
(task ``splitbrain``) -> transfer (linear probes on frozen conv1..conv5)} -> combine_transfer (one table, the best
variant) -> promote (``chromaflow-splitbrain``, gate on the best layer's top-1).

The probes need class labels (folders, Tiny-ImageNet annotations or ``<wnid>_name`` files, see
:mod:`chromaflow.data.sources`); the committed photo sample has none, so the default source is the
Tiny-ImageNet subset of ``../shared/datasets`` restricted to ``classes`` labels. Defaults are CPU-sized
(width 1/4, 20 classes, 150 steps); the thesis trains AlexNet-width towers for days:

    chromaflow pipeline run --name transfer --arg steps=150
    chromaflow pipeline run --name transfer --arg "variants=[split_cl_cl, split_reg_reg, lab_lab]"

Baseline rows (Gaussian init, ImageNet SqueezeNet) are left to the CLI (``chromaflow transfer --model ...``),
which probes them beside trained models in one table; no export (a representation, not a servable model).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components.combine_transfer import combine_transfer
from components.prepare import prepare
from components.train import train
from components.transfer import transfer as transfer_probe
from pipelines.common import cache, gpu_training, promote_step


class Outputs(NamedTuple):
    table: Artifact
    best_model: Model
    decision: Artifact


@dsl.pipeline(name="chromaflow-transfer", description="Split-brain variants (Zhang 2018, ch. 5) by linear probes")
def transfer(
    source: str = "../shared/datasets/tiny-imagenet-200-subset.zip",
    max_side: int = 64,
    val_fraction: float = 0.2,
    variants: list = ["split_cl_cl", "l_ab_cl"],  # noqa: B006 (a KFP pipeline parameter default)
    classes: int = 20,
    input_size: int = 64,
    width: float = 0.25,
    fc_width: int = 256,
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    train_per_class: int = 100,
    val_per_class: int = 0,
    target_dim: int = 9216,
    max_iter: int = 200,
    model_name: str = "chromaflow-splitbrain",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "splitbrain",
    tracking_uri: str = "",
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    prep = cache(prepare(source=source, max_side=max_side, val_fraction=val_fraction), "prepare")
    with dsl.ParallelFor(variants, parallelism=1) as variant:
        tr = train(
            dataset=prep.outputs["dataset"],
            task="splitbrain",
            width=width,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            options={"variant": variant, "input_size": input_size, "fc_width": fc_width, "classes": classes},
            experiment=experiment,
            tracking_uri=tracking_uri,
            pipeline_run_id=run_id,
        )
        gpu_training(cache(tr, "train"))
        ev = cache(
            transfer_probe(
                model=tr.outputs["model"],
                dataset=prep.outputs["dataset"],
                label=variant,
                classes=classes,
                train_per_class=train_per_class,
                val_per_class=val_per_class,
                size=input_size,
                target_dim=target_dim,
                max_iter=max_iter,
                seed=seed,
            ),
            "evaluate",
        )
    best = combine_transfer(
        models=dsl.Collected(tr.outputs["model"]), evaluations=dsl.Collected(ev.outputs["evaluation"])
    )
    cache(best, "combine_transfer")
    pr = promote_step(
        best.outputs["best_model"],
        best.outputs["table"],
        model_name=model_name,
        gates=gates,
        experiment=experiment,
        tracking_uri=tracking_uri,
        run_id=run_id,
    )
    return Outputs(table=best.outputs["table"], best_model=best.outputs["best_model"], decision=pr.outputs["decision"])
