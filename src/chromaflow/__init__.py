"""chromaflow: the MLOps reference implementation of Richard Zhang's image-synthesis thesis.

Library code only: pure, importable, tested. Orchestration (KFP, DVC, TorchServe) wraps it.
"""

__version__ = "0.1.0"
