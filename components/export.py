"""KFP component ``export``: a TorchServe ``.mar`` from a registered model (:func:`chromaflow.export.mar.export_mar`)."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export(model_uri: str, mar: Output[Model], tracking_uri: str = "") -> str:
    """Export ``model_uri`` (``models:/name@alias``) into the folder ``mar``; returns the archive's file name."""
    import os

    from chromaflow.export.mar import export_mar

    path = export_mar(model_uri, mar.path, tracking_uri=tracking_uri or None)
    mar.metadata.update({"model_uri": model_uri, "archive": os.path.basename(str(path))})
    return os.path.basename(str(path))
