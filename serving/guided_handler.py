"""TorchServe handler for user-guided colorization (thesis ch. 3): a thin adapter over ``chromaflow.serving.guided``.

One archive serves three endpoints; the TorchServe model name picks which (``colorize_guided``, ``palette``,
``gamut``, or a name ending in ``-palette`` / ``_gamut`` ...), unless ``handler.endpoint`` in the archive's
model-config.yaml fixes it. Requests are JSON; see ``serving/README.md``. TorchServe requires exactly one
class in this file.
"""

from chromaflow.serving import handle_torchserve, pick_device
from chromaflow.serving.guided import GuidedService


class GuidedHandler:
    """``initialize(context)`` loads the archive's weights; ``handle(data, context)`` answers a batch."""

    def __init__(self):
        self.service = None
        self.initialized = False

    def initialize(self, context):
        props = context.system_properties
        config = (context.model_yaml_config or {}).get("handler", {})
        self.service = GuidedService.from_model_dir(
            props["model_dir"],
            config,
            model_name=getattr(context, "model_name", None),
            device=pick_device(props.get("gpu_id")),
        )
        self.initialized = True

    def handle(self, data, context):
        return handle_torchserve(self.service, data, context)
