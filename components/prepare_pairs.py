"""KFP component ``prepare_pairs``: one-to-many image pairs -> Parquet shards + manifest
(:func:`chromaflow.data.pairs.prepare_pairs`; CLI ``chromaflow prepare-pairs``)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare_pairs(
    source: str,
    dataset: Output[Dataset],
    report: Output[Markdown],
    pairs: str = "edges",
    max_side: int = 256,
    val_fraction: float = 0.1,
) -> int:
    """Pair the images under ``source`` (layout ``pairs``: ``edges`` = BSDS500 boundary maps -> photo, ``gray`` =
    a photo's L -> the photo) into ``dataset``. Returns the number of pairs; rejected files are listed in the
    report with their reason."""
    from chromaflow.data.pairs import prepare_pairs as run_prepare_pairs
    from chromaflow.data.pairs import summary_line

    manifest = run_prepare_pairs(source, dataset.path, pairs=pairs, max_side=max_side, val_fraction=val_fraction)
    counts = manifest.get("counts", {})
    dataset.metadata.update({"counts": counts, "fingerprint": manifest.get("fingerprint", "")})
    rejected = manifest.get("rejected", [])
    lines = [f"# prepare-pairs: {source}", "", f"- {summary_line(manifest)}", f"- rejected: {len(rejected)}", ""]
    lines += [f"  - `{r.get('path')}`: {r.get('reason')}" for r in rejected]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return int(counts["pairs"])
