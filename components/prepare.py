"""KFP component ``prepare``: images -> Parquet shards + manifest (:func:`chromaflow.data.prepare.prepare`)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare(
    source: str,
    dataset: Output[Dataset],
    report: Output[Markdown],
    max_side: int = 256,
    val_fraction: float = 0.1,
    part: str = "",
) -> int:
    """Ingest the images under ``source`` (a folder, zip or fsspec URL) into ``dataset`` (shards/ + manifest.json).

    ``part``: ``"I/N"`` ingests only that share into a part folder (``prepare_merge`` joins them); ``""``: all.
    Returns the number of accepted images; rejected files are listed in the report with their reason.
    """
    from chromaflow.data.parts import parse_part
    from chromaflow.data.prepare import prepare as run_prepare

    share = parse_part(part) if part else None
    manifest = run_prepare(source, dataset.path, max_side=max_side, val_fraction=val_fraction, part=share)
    counts = manifest.get("counts", {})
    dataset.metadata.update({"counts": counts, "fingerprint": manifest.get("fingerprint", "")})
    rejected = manifest.get("rejected", [])
    lines = [f"# prepare: {source}", "", f"- counts: {counts}", f"- rejected: {len(rejected)}", ""]
    lines += [f"  - `{r.get('path')}`: {r.get('reason')}" for r in rejected]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return int(sum(v for v in counts.values() if isinstance(v, int)))
