"""Ingest to Parquet shards, the shard loader, and the Lab quantization statistics.

The two step functions live in modules of the same name (the CLI maps ``prepare`` / ``stats`` to them):
``from chromaflow.data.prepare import prepare`` and ``from chromaflow.data.stats import stats``. They are not
re-exported here: a submodule import would shadow a package attribute of the same name.
``ShardDataset`` / ``collate`` / ``shard_files`` (``chromaflow.data.dataset``) are imported lazily, so
``import chromaflow.data`` stays light (prepare's worker processes never import torch).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ShardDataset": "chromaflow.data.dataset",
    "collate": "chromaflow.data.dataset",
    "shard_files": "chromaflow.data.dataset",
    "list_source": "chromaflow.data.sources",
    "process_image": "chromaflow.data.images",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chromaflow.data' has no attribute {name!r}")
