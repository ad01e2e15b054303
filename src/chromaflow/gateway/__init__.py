"""The web page for user-guided colorization and the small gateway that serves it.

The gateway (standard-library ``ThreadingHTTPServer``) serves ``static/index.html`` and proxies
``POST /api/<endpoint>`` to TorchServe, adding the inference token it reads from TorchServe's
``key_file.json``: the browser never sees a token. See :mod:`chromaflow.gateway.server`.
"""

from chromaflow.gateway.server import Gateway, GatewayConfig, make_gateway, start_gateway_process, stop_gateway_process

__all__ = ["Gateway", "GatewayConfig", "make_gateway", "start_gateway_process", "stop_gateway_process"]
