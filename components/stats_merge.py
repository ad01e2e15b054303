"""KFP component ``stats_merge``: add the counts of stats parts (:func:`chromaflow.data.stats_merge.stats_merge`)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def stats_merge(parts: Input[list[Artifact]], stats_dir: Output[Artifact], metrics: Output[Metrics]):
    """Add the exact counts of ``parts`` (collected from a ParallelFor of ``stats``) and write the whole split's
    stats to ``stats_dir``, as ``stats`` does; the scalar entries of ``stats.json`` become KFP metrics."""
    from chromaflow.data.stats_merge import stats_merge as run_merge

    summary = run_merge([p.path for p in parts], stats_dir.path)
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
