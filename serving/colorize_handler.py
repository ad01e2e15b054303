"""TorchServe handler for automatic colorization: a thin adapter over ``chromaflow.serving``.

All logic (decoding, validation, batching, encoding, errors) lives in the ``chromaflow.serving``
package, so it is tested without a server and another server could host it. This file is packed
into the ``.mar`` by ``chromaflow export``; TorchServe requires exactly one class defined in it.
"""

from chromaflow.serving import ColorizeService, TorchServeHandler


class ColorizeHandler(TorchServeHandler):
    """Loads the archive's weights into a :class:`ColorizeService` (see :class:`TorchServeHandler`)."""

    service_class = ColorizeService
