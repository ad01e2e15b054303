"""TorchServe handler for the LPIPS distance: a thin adapter over ``chromaflow.serving.lpips_core``.

The archive holds ``lpips.safetensors`` (an ``lpips`` or ``lpips_2afc`` ``chromaflow.models.save_weights``
file). Requests are JSON ``{"image0": base64, "image1": base64, "spatial": bool, "resize": "to_first"|"none"}``; see
:mod:`chromaflow.serving.lpips_core` for the answer and the error codes. TorchServe requires exactly one
class defined in this file.
"""

from chromaflow.serving import TorchServeHandler
from chromaflow.serving.lpips_core import LpipsService


class LpipsHandler(TorchServeHandler):
    """Loads the archive's LPIPS file into a :class:`LpipsService` (see :class:`TorchServeHandler`)."""

    service_class = LpipsService
