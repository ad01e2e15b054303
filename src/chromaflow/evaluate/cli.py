"""``chromaflow evaluate --task NAME [task options]``: dispatch to the module ``chromaflow.evaluate.<NAME>``.

No central list of tasks: any module in this package that exposes ``add_arguments(parser)`` and
``main(args) -> int`` is a task (``lpips`` maps to ``lpips_eval``). ``--task`` takes the rest of the command
line, which the task's own parser reads (so ``--task colorization --help`` shows that task's options).

    chromaflow evaluate --task colorization --weights runs/demo/model.safetensors --data runs/demo/prepared \\
        --out runs/demo/eval
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re

log = logging.getLogger(__name__)

ALIASES = {"lpips": "lpips_eval"}  # task name -> module name where they differ
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def task_module_name(task: str) -> str:
    """``"colorization"`` -> ``"chromaflow.evaluate.colorization"`` (ValueError for a malformed name)."""
    if not _NAME.fullmatch(task):
        raise ValueError(f"--task {task!r}: expected a lowercase module name like 'colorization'")
    return f"{__package__}.{ALIASES.get(task, task)}"


def available_tasks() -> list[str]:
    """Task names: modules of this package that expose ``add_arguments`` and ``main`` (imports them)."""
    import chromaflow.evaluate as pkg

    reverse = {v: k for k, v in ALIASES.items()}
    names = set()
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name == "cli" or m.ispkg:
            continue
        try:
            mod = importlib.import_module(f"{__package__}.{m.name}")
        except Exception:  # noqa: BLE001 - a broken module is just not listed here; --task NAME shows its error
            continue
        if callable(getattr(mod, "add_arguments", None)) and callable(getattr(mod, "main", None)):
            names.add(reverse.get(m.name, m.name))
    return sorted(names)


def load_task(task: str):
    """Import the task module; ValueError naming the task and the available ones when it is not a task."""
    name = task_module_name(task)
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise ValueError(f"--task {task!r}: no module {name} (available: {', '.join(available_tasks())})") from None
    if not (callable(getattr(mod, "add_arguments", None)) and callable(getattr(mod, "main", None))):
        raise ValueError(f"--task {task!r}: {name} has no add_arguments/main")
    return mod


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        nargs=argparse.REMAINDER,
        required=True,
        metavar="NAME [OPTIONS]",
        help="evaluation task (a module of chromaflow.evaluate, e.g. colorization, lpips) followed by its options",
    )


def main(args: argparse.Namespace) -> int:
    if not args.task:
        log.error("evaluate: --task needs a name (available: %s)", ", ".join(available_tasks()))
        return 2
    task, rest = args.task[0], args.task[1:]
    try:
        mod = load_task(task)
    except ValueError as e:
        log.error("evaluate: %s", e)
        return 2
    parser = argparse.ArgumentParser(
        prog=f"chromaflow evaluate --task {task}",
        description=mod.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mod.add_arguments(parser)
    return int(mod.main(parser.parse_args(rest)) or 0)
