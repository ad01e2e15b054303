"""KFP component ``combine_transfer``: one table of several transfer results and the best representation
(:func:`chromaflow.evaluate.transfer.combine_transfer`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def combine_transfer(
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    best_model: Output[Model],
    table: Output[Artifact],
    report_md: Output[Markdown],
    report_html: Output[HTML],
) -> NamedTuple("Outputs", [("label", str), ("top1", float)]):
    """Merge ``evaluations[i]/metrics.json`` (collected from a ParallelFor, ``models[i]`` trained beside each)
    into ``table`` (metrics.json with the top-level ``transfer_best_top1`` and ``eval_set`` of the best, and
    report.md/html, transfer.png); copy the best candidate's model folder to ``best_model``."""
    import os
    import shutil
    from collections import namedtuple

    from chromaflow.evaluate.transfer import combine_transfer as combine

    if len(models) != len(evaluations):
        raise ValueError(f"combine_transfer: {len(models)} models but {len(evaluations)} evaluations")
    m = combine([e.path for e in evaluations], table.path)
    i = int(m["best_index"])
    shutil.copytree(models[i].path, best_model.path, dirs_exist_ok=True)
    best_model.metadata.update({**dict(models[i].metadata), "transfer_best_top1": m["transfer_best_top1"]})
    table.metadata.update({"best_label": m["best_label"], "eval_set": m["eval_set"]})
    shutil.copyfile(os.path.join(table.path, "report.md"), report_md.path)
    shutil.copyfile(os.path.join(table.path, "report.html"), report_html.path)
    return namedtuple("Outputs", ["label", "top1"])(str(m["best_label"]), float(m["transfer_best_top1"]))
