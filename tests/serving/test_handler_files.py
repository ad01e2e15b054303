"""The handler files packed into archives: one class each, as TorchServe's loader requires, built on the shared base."""

from __future__ import annotations

import importlib.util

import pytest
from ts.utils.util import list_classes_from_module

from chromaflow.export.mar import SERVING_DIR
from chromaflow.serving import TorchServeHandler


@pytest.mark.parametrize("name", ["colorize_handler", "guided_handler", "lpips_handler", "translate_handler"])
def test_handler_file_defines_exactly_one_service_class(name):
    spec = importlib.util.spec_from_file_location(name, SERVING_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = list_classes_from_module(module)  # what TorchServe's loader instantiates
    assert len(classes) == 1
    handler = classes[0]()
    assert isinstance(handler, TorchServeHandler) and not handler.initialized
    assert hasattr(handler.service_class, "from_model_dir")
