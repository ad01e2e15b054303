"""TorchServe handler for user-guided colorization (thesis ch. 3): a thin adapter over ``chromaflow.serving.guided``.

One archive serves three endpoints; the TorchServe model name picks which (``colorize_guided``, ``palette``,
``gamut``, or a name ending in ``-palette`` / ``_gamut`` ...), unless ``handler.endpoint`` in the archive's
model-config.yaml fixes it. Requests are JSON; see ``serving/README.md``. TorchServe requires exactly one
class defined in this file.
"""

from chromaflow.serving import TorchServeHandler
from chromaflow.serving.guided import GuidedService


class GuidedHandler(TorchServeHandler):
    """Loads the archive's weights into a :class:`GuidedService` whose endpoint follows the model name."""

    service_class = GuidedService

    def load_service(self, model_dir, config, device, context):
        return GuidedService.from_model_dir(
            model_dir, config, model_name=getattr(context, "model_name", None), device=device
        )
