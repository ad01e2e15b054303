"""Training: one engine (``engine.fit``) and one task module per method (``tasks/<name>.py``).

>>> from chromaflow.train import train
>>> train("colorization", data="runs/demo/prepared", out="runs/demo/train", steps=200)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from typing import Any


def train(task: str, **kwargs: Any) -> dict[str, Any]:
    """The library function of the ``train`` step: ``chromaflow train --task TASK --key value ...``.

    ``kwargs`` use the flags' names with ``_`` (``batch_size=16``, ``soft_k=5``); unknown names are an
    error listing the known ones. Returns the final metrics (also in ``<out>/metrics.json``).
    """
    from chromaflow.train import cli

    parser = cli.task_parser(task)
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"train({task!r}): unknown argument(s) {unknown}; known: {sorted(defaults)}")
    args = argparse.Namespace(**{**defaults, **kwargs, "task": task})
    return cli.run(args)
