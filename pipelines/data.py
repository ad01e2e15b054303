"""The data pipeline: prepare and stats fanned out over ``data_parts`` tasks each, merged exactly.

    part_list -> ParallelFor(part){prepare --part} -> prepare_merge -> ParallelFor(part){stats --part} -> stats_merge

Each part ingests a contiguous share of the source's sorted listing (``chromaflow.data.parts``); the merges
give the single-machine dataset (same rows, manifest and fingerprint; shards named by part) and the
single-machine stats, byte for byte. Part tasks request CPU and memory, are cached (deterministic) and
retried (``set_retry``): a retried part writes the same bytes. At most :data:`PARALLELISM` parts run at once;
it and the per-part requests (``pipelines.common.data_part``) are compile-time settings in KFP.

    chromaflow pipeline run --name data --arg source=$PWD/data/sample --arg data_parts=3
    chromaflow pipeline submit --name data --host https://kfp.example.org \\
        --arg source=gs://bucket/imagenet/train --arg data_parts=64
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset

from components.part_list import part_list
from components.prepare import prepare
from components.prepare_merge import prepare_merge
from components.stats import stats
from components.stats_merge import stats_merge
from pipelines.common import cache, data_part

PARALLELISM = 64  # part tasks running at once (KFP takes it at compile time)


class Outputs(NamedTuple):
    dataset: Dataset
    stats_dir: Artifact


@dsl.pipeline(name="chromaflow-data", description="prepare + stats in data_parts parallel parts, merged exactly")
def data(
    source: str = "data/sample",
    max_side: int = 256,
    val_fraction: float = 0.4,
    data_parts: int = 1,
) -> Outputs:
    parts = cache(part_list(count=data_parts), "part_list")
    with dsl.ParallelFor(parts.output, parallelism=PARALLELISM) as part:
        prep = prepare(source=source, max_side=max_side, val_fraction=val_fraction, part=part)
        data_part(cache(prep, "prepare"))
    merged = cache(prepare_merge(parts=dsl.Collected(prep.outputs["dataset"])), "prepare_merge")
    with dsl.ParallelFor(parts.output, parallelism=PARALLELISM) as part:
        st = stats(dataset=merged.outputs["dataset"], part=part)
        data_part(cache(st, "stats"))
    total = cache(stats_merge(parts=dsl.Collected(st.outputs["stats_dir"])), "stats_merge")
    return Outputs(dataset=merged.outputs["dataset"], stats_dir=total.outputs["stats_dir"])
