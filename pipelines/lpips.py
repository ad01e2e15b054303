"""The LPIPS pipeline (thesis ch. 6): build_proxy_bapps -> train (task ``lpips``, variant ``lin``) ->
evaluate_lpips (2AFC / JND) -> promote (``chromaflow-lpips``, gate on the 2AFC score) -> export.

PROXY DATA: no human judgments are available offline, so the BAPPS-layout data is built from real photos with
graded traditional distortions (:mod:`chromaflow.data.bapps`); its scores are not the thesis's Table 6.5.
On a cluster with the real BAPPS, replace the first step by a dataset importer of it. Defaults: the
ImageNet-pretrained SqueezeNet of ``../shared/datasets`` as the frozen trunk (``lin``: only the 1x1
calibration layers are learned) and BSDS500 train+test / val+Kodak photos for the two splits:

    chromaflow pipeline run --name lpips --arg steps=200
    chromaflow pipeline run --name lpips --arg net=alex --arg trunk=random   # no pretrained AlexNet offline

Outputs: ``evaluation`` (2AFC / JND metrics + reports), ``decision`` (promotion JSON) and ``mar``: the
``champion`` after the decision exported by :func:`chromaflow.export.mar.export_mar` as ``lpips.mar`` (the
registered ``lpips_2afc`` training output packed as is, which ``serving/lpips_handler.py`` loads,
sha256-checked against the version's tag), served at ``/predictions/lpips``.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from components.build_proxy_bapps import build_proxy_bapps
from components.evaluate_lpips import evaluate_lpips
from components.train import train
from pipelines.common import cache, export_step, gpu_training, promote_step

SHARED = "../shared/datasets"


class Outputs(NamedTuple):
    evaluation: Artifact
    decision: Artifact
    mar: Model


@dsl.pipeline(name="chromaflow-lpips", description="LPIPS (Zhang 2018, ch. 6): lin calibration on proxy BAPPS")
def lpips(
    train_images: list = [f"{SHARED}/bsds500/images/train", f"{SHARED}/bsds500/images/test"],  # noqa: B006
    val_images: list = [f"{SHARED}/bsds500/images/val", f"{SHARED}/kodak24"],  # noqa: B006
    n_train: int = 2000,
    n_val: int = 500,
    n_jnd: int = 500,
    net: str = "squeeze",
    trunk: str = f"{SHARED}/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth",
    variant: str = "lin",
    steps: int = 200,
    batch_size: int = 50,
    lr: float = 1e-4,
    seed: int = 0,
    model_name: str = "chromaflow-lpips",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "lpips",
    tracking_uri: str = "",
) -> Outputs:
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    data = build_proxy_bapps(
        train_images=train_images, val_images=val_images, n_train=n_train, n_val=n_val, n_jnd=n_jnd, seed=seed
    )
    cache(data, "build_proxy_bapps")
    tr = train(
        dataset=data.outputs["bapps"],
        task="lpips",
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        options={"variant": variant, "net": net, "trunk": trunk},
        experiment=experiment,
        tracking_uri=tracking_uri,
        pipeline_run_id=run_id,
    )
    gpu_training(cache(tr, "train"))
    ev = cache(evaluate_lpips(model=tr.outputs["model"], bapps=data.outputs["bapps"]), "evaluate")
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
