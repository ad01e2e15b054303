"""TorchServe handler for the LPIPS distance: a thin adapter over ``chromaflow.serving.lpips_core``.

The archive holds ``lpips.safetensors`` (written by ``chromaflow.evaluate.lpips.save_lpips``). Requests are
JSON ``{"image0": base64, "image1": base64, "spatial": bool, "resize": "to_first"|"none"}``; see
:mod:`chromaflow.serving.lpips_core` for the answer and the error codes. TorchServe requires exactly one
class in this file.
"""

from chromaflow.serving import handle_torchserve, pick_device
from chromaflow.serving.lpips_core import LpipsService


class LpipsHandler:
    """``initialize(context)`` loads the archive's weights; ``handle(data, context)`` answers a batch."""

    def __init__(self):
        self.service = None
        self.initialized = False

    def initialize(self, context):
        props = context.system_properties
        config = (context.model_yaml_config or {}).get("handler", {})
        self.service = LpipsService.from_model_dir(props["model_dir"], config, device=pick_device(props.get("gpu_id")))
        self.initialized = True

    def handle(self, data, context):
        return handle_torchserve(self.service, data, context)
