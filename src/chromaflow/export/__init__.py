"""Serving artifacts from a registered model: :func:`export_mar` builds a TorchServe ``.mar``."""

from chromaflow.export.mar import export_mar

__all__ = ["export_mar"]
