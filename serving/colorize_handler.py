"""TorchServe handler for automatic colorization: a thin adapter over ``chromaflow.serving``.

All logic (decoding, validation, batching, encoding, errors) lives in the ``chromaflow.serving``
package, so it is tested without a server and another server could host it. This file is packed
into the ``.mar`` by ``chromaflow export``; TorchServe requires exactly one class in it.
"""

from chromaflow.serving import ColorizeService, handle_torchserve, pick_device


class ColorizeHandler:
    """``initialize(context)`` loads the archive's weights; ``handle(data, context)`` answers a batch."""

    def __init__(self):
        self.service = None
        self.initialized = False

    def initialize(self, context):
        props = context.system_properties
        config = (context.model_yaml_config or {}).get("handler", {})
        self.service = ColorizeService.from_model_dir(
            props["model_dir"], config, device=pick_device(props.get("gpu_id"))
        )
        self.initialized = True

    def handle(self, data, context):
        return handle_torchserve(self.service, data, context)
