"""KFP component ``promote``: register the trained model as ``challenger`` and run the promotion gates
(:func:`chromaflow.tracking.log_model` + :func:`chromaflow.tracking.promote`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    model: Input[Model],
    evaluation: Input[Artifact],
    decision: Output[Artifact],
    report: Output[Markdown],
    model_name: str = "chromaflow-colorization",
    gates: str = "mlflow/promotion.yaml",
    experiment: str = "colorization",
    tracking_uri: str = "",
    pipeline_run_id: str = "",
) -> NamedTuple("Outputs", [("promoted", bool), ("version", str), ("champion_uri", str)]):
    """Log ``model/model.safetensors`` with the metrics of ``evaluation/metrics.json`` as a new version of
    ``model_name`` (alias ``challenger``), then compare it with ``champion`` under ``gates``.

    ``decision`` receives the decision JSON; ``report`` its reasons. ``champion_uri`` is
    ``models:/<model_name>@champion`` (the version serving after the decision, promoted or not).
    """
    import json
    import os
    from collections import namedtuple

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if pipeline_run_id:
        os.environ["CHROMAFLOW_PIPELINE_RUN_ID"] = pipeline_run_id
    import numpy as np

    from chromaflow.tracking import log_model
    from chromaflow.tracking.promote import promote as decide

    with open(os.path.join(evaluation.path, "metrics.json"), encoding="utf-8") as f:
        result = json.load(f)
    scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    weights = os.path.join(model.path, "model.safetensors")
    example = np.full((1, 32, 32, 3), 128, np.uint8)  # the pyfunc signature's input example: (N, H, W, 3) uint8
    example[0, :, :, 0] = np.linspace(0, 255, 32, dtype=np.uint8)
    version = log_model(
        weights, model_name, example, metrics=scalars, eval_set=result.get("eval_set"),
        experiment=experiment, data=weights, params=dict(model.metadata),
    )  # fmt: skip
    d = decide(model_name, gates, out=decision.path)
    decision.metadata.update({"promoted": d["promoted"], "version": str(version.version)})
    lines = [f"# promote {model_name} v{version.version}: {'PROMOTED' if d['promoted'] else 'rejected'}", ""]
    lines += [f"- {r}" for r in d["reasons"]]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    outputs = namedtuple("Outputs", ["promoted", "version", "champion_uri"])
    return outputs(bool(d["promoted"]), str(version.version), f"models:/{model_name}@champion")
