"""KFP component ``stats``: the empirical ab prior and rebalancing weights (:func:`chromaflow.data.stats.stats`)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def stats(
    dataset: Input[Dataset], stats_dir: Output[Artifact], metrics: Output[Metrics], split: str = "train", part: str = ""
):
    """Write ``prior.npy`` (Q,), ``weights.npy`` (Q,), ``counts.npy``, ``l_hist.npy``, ``stats.json`` and plots
    to ``stats_dir``; the scalar entries of ``stats.json`` become KFP metrics. ``part``: ``"I/N"`` writes only
    that share's exact counts (``stats_merge`` adds them); ``""``: the whole split."""
    from chromaflow.data.parts import parse_part
    from chromaflow.data.stats import stats as run_stats

    share = parse_part(part) if part else None
    summary = run_stats(dataset.path, stats_dir.path, split=split, part=share)
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, float(v))
