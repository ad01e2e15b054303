"""KFP component ``part_list``: the ``"I/N"`` names of ``N`` data parts (:func:`chromaflow.data.parts.part_list`),
the items of the ParallelFor that fans prepare and stats out."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def part_list(count: int) -> list:
    """``["1/N", ..., "N/N"]`` for ``count`` = N >= 1."""
    from chromaflow.data.parts import part_list as names

    return names(count)
