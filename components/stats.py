"""KFP component ``stats``: the empirical ab prior and rebalancing weights (:func:`chromaflow.data.stats.stats`)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def stats(dataset: Input[Dataset], stats_dir: Output[Artifact], metrics: Output[Metrics], split: str = "train"):
    """Write ``prior.npy`` (Q,), ``weights.npy`` (Q,), ``counts.npy``, ``l_hist.npy``, ``stats.json`` and plots
    to ``stats_dir``; the scalar entries of ``stats.json`` become KFP metrics."""
    from chromaflow.data.stats import stats as run_stats

    summary = run_stats(dataset.path, stats_dir.path, split=split)
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
