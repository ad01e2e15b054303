"""Kubeflow Pipelines v2 components: one per step, each a thin typed wrapper over the library function
that the CLI (``chromaflow <step>``) and the DVC stage (``dvc.yaml``) also call.

A component body holds no logic of its own: it imports ``chromaflow``, calls the step's function with
the artifact paths KFP hands it, and copies a few numbers into KFP metadata/metrics. Bodies are
serialized into the compiled YAML, so every import lives inside the function.

Every component runs in the project's image (the ``Dockerfile``), named once here: :data:`BASE_IMAGE` (CPU
torch), or :data:`GPU_IMAGE` (CUDA torch) for the tasks ``pipelines.common.gpu_training`` gives a GPU.
Caching is on only for the deterministic steps (prepare, stats, evaluate); the pipelines set it.
"""

import os

from chromaflow import __version__

# the image's repository, read when the pipelines are compiled: a cluster's registry path
# (CHROMAFLOW_IMAGE_REPO=registry.example.org/ml/chromaflow chromaflow pipeline compile ...); the tag is the version
IMAGE_REPO = os.environ.get("CHROMAFLOW_IMAGE_REPO", "chromaflow")
BASE_IMAGE = f"{IMAGE_REPO}:{__version__}"  # CPU steps; built by `make image`, pushed under this name to the registry
GPU_IMAGE = f"{BASE_IMAGE}-cuda"  # the CUDA variant (same Dockerfile, VARIANT=cuda): set on tasks that request a GPU
