"""KFP component ``prepare_merge``: join prepare parts (:func:`chromaflow.data.prepare_merge.prepare_merge`)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare_merge(parts: Input[list[Dataset]], dataset: Output[Dataset]) -> int:
    """Join the part folders ``parts`` (collected from a ParallelFor of ``prepare``) into ``dataset``: the
    single-machine prepared dataset. Returns the number of accepted images."""
    from chromaflow.data.prepare_merge import prepare_merge as run_merge

    manifest = run_merge([p.path for p in parts], dataset.path)
    dataset.metadata.update({"counts": manifest["counts"], "fingerprint": manifest["fingerprint"]})
    return int(manifest["counts"]["images"])
