"""KFP component ``build_proxy_bapps``: a PROXY BAPPS dataset from real photos
(:func:`chromaflow.data.bapps.build_proxy_bapps`; labels are the known distortion ordering, not human judgments)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_proxy_bapps(
    train_images: list,
    val_images: list,
    bapps: Output[Dataset],
    report: Output[Markdown],
    n_train: int = 2000,
    n_val: int = 500,
    n_jnd: int = 500,
    seed: int = 0,
) -> int:
    """Write ``2afc/{train,val}/traditional``, ``jnd/val/traditional`` and ``manifest.json`` into ``bapps`` from
    the photo files or folders ``train_images`` / ``val_images`` (disjoint). Returns the number of items."""
    from chromaflow.data.bapps import build_proxy_bapps as build

    manifest = build(bapps.path, list(train_images), list(val_images), n_train=n_train, n_val=n_val, n_jnd=n_jnd,
                     seed=seed)  # fmt: skip
    counts = manifest.get("counts", {})
    bapps.metadata.update({"proxy": True, "counts": counts})
    lines = ["# proxy BAPPS (NOT human judgments: labels are the distortion-strength ordering)", ""]
    lines += [f"- {split}: {c}" for split, c in counts.items()]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return int(sum(sum(c.values()) for c in counts.values() if isinstance(c, dict)))
