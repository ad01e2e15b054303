"""KFP component ``select_best``: pick the best sweep candidate by one metric (:func:`chromaflow.pipeline.select_best`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def select_best(
    scores: list,
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    best_model: Output[Model],
    best_evaluation: Output[Artifact],
    report: Output[Markdown],
    metric: str = "auc_rebal",
    higher_is_better: bool = True,
) -> NamedTuple("Outputs", [("index", int), ("score", float)]):
    """Copy the candidate with the best ``scores[i]`` (collected from a ParallelFor) to ``best_model`` /
    ``best_evaluation``; the report lists every candidate with its score and training parameters."""
    import shutil
    from collections import namedtuple

    from chromaflow.pipeline import select_best as pick

    i = pick([float(s) for s in scores], higher_is_better=higher_is_better)
    shutil.copytree(models[i].path, best_model.path, dirs_exist_ok=True)
    shutil.copytree(evaluations[i].path, best_evaluation.path, dirs_exist_ok=True)
    best_model.metadata.update(dict(models[i].metadata))
    lines = [f"# sweep: best by {metric} ({'higher' if higher_is_better else 'lower'} is better)", ""]
    lines += ["| # | loss | " + metric + " |", "|---|---|---|"]
    for k, (m, s) in enumerate(zip(models, scores, strict=True)):
        mark = " **best**" if k == i else ""
        lines.append(f"| {k}{mark} | {m.metadata.get('loss', '?')} | {float(s):.3f} |")
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return namedtuple("Outputs", ["index", "score"])(i, float(scores[i]))
