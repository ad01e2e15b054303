"""TorchServe handler for multimodal translation (BicycleGAN, thesis ch. 4): a thin adapter over
``chromaflow.serving.translate``.

Requests are JSON, multipart or a raw image with query fields (an image, ``n`` samples, ``seed`` | ``z`` |
``style``); see ``serving/README.md``. TorchServe requires exactly one class defined in this file.
"""

from chromaflow.serving import TorchServeHandler
from chromaflow.serving.translate import TranslateService


class TranslateHandler(TorchServeHandler):
    """Loads the archive's weights into a :class:`TranslateService` (see :class:`TorchServeHandler`)."""

    service_class = TranslateService
