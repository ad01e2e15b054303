"""KFP component ``promote``: register the trained model as ``challenger`` and run the promotion gates."""

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
    """Register ``model/model.safetensors`` with the metrics of ``evaluation/metrics.json`` as a new version of
    ``model_name`` (alias ``challenger``), then compare it with ``champion`` under ``gates``
    (:func:`chromaflow.export.register.register_challenger` + :func:`chromaflow.tracking.promote.promote`).

    ``decision`` receives the decision JSON; ``report`` its reasons. ``champion_uri`` is
    ``models:/<model_name>@champion`` (the version serving after the decision, promoted or not).
    """
    import os
    from collections import namedtuple

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if pipeline_run_id:
        os.environ["CHROMAFLOW_PIPELINE_RUN_ID"] = pipeline_run_id
    from chromaflow.export.register import register_challenger
    from chromaflow.tracking.promote import promote as decide

    weights = os.path.join(model.path, "model.safetensors")
    metrics = os.path.join(evaluation.path, "metrics.json")
    version = register_challenger(weights, metrics, model_name, experiment=experiment, params=dict(model.metadata))
    d = decide(model_name, gates, out=decision.path)
    decision.metadata.update({"promoted": d["promoted"], "version": str(version.version)})
    lines = [f"# promote {model_name} v{version.version}: {'PROMOTED' if d['promoted'] else 'rejected'}", ""]
    lines += [f"- {r}" for r in d["reasons"]]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    outputs = namedtuple("Outputs", ["promoted", "version", "champion_uri"])
    return outputs(bool(d["promoted"]), str(version.version), f"models:/{model_name}@champion")
