"""The one command-line entry point: ``chromaflow <step> ...``.

Each step lives in its own module, which exposes ``add_arguments(parser)`` and ``main(args) -> int``
around one library function. This file holds no logic: it only maps step names to modules, imported
lazily so ``chromaflow --help`` stays fast, and runs the step with MLflow as its run logger (``chromaflow.runlog``).

    chromaflow prepare --source data/sample --out runs/demo/prepared
    chromaflow stats --data runs/demo/prepared --out runs/demo/stats
"""

from __future__ import annotations

import argparse
import importlib
import sys

from chromaflow import runlog
from chromaflow.exact import use_portable_kernels
from chromaflow.logs import setup_logging

# step name -> (module, one-line help). One step = one library function = one CLI command.
STEPS: dict[str, tuple[str, str]] = {
    "prepare": ("chromaflow.data.prepare", "ingest images into Parquet shards with a manifest"),
    "prepare-pairs": ("chromaflow.data.pairs", "ingest input -> target image pairs (BSDS boundaries -> photo)"),
    "prepare-merge": ("chromaflow.data.prepare_merge", "join the parts of prepare --part I/N into one dataset"),
    "stats": ("chromaflow.data.stats", "Lab quantization statistics: ab prior, L histogram, weights"),
    "stats-merge": ("chromaflow.data.stats_merge", "add the counts of stats --part I/N; write the split's stats"),
    "bapps": ("chromaflow.data.bapps", "build a PROXY BAPPS (2AFC/JND) from photos with graded distortions"),
    "train": ("chromaflow.train.cli", "train a model (--task colorization|guided|splitbrain|lpips|bicyclegan)"),
    "evaluate": ("chromaflow.evaluate.cli", "evaluate a model with the thesis's protocol"),
    "evaluate-translation": ("chromaflow.evaluate.translation", "diversity, realism proxies, encoding (ch. 4)"),
    "transfer": ("chromaflow.evaluate.transfer", "linear probes on frozen layers (transfer evaluation, ch. 5)"),
    "promote": ("chromaflow.export.register", "compare challenger with champion; move the alias"),
    "ship": ("chromaflow.export.ship", "write a trained model into weights/ with its model card"),
    "export": ("chromaflow.export.mar", "build a TorchServe .mar from a registered model"),
    "colorize": ("chromaflow.serving.files", "colorize image files with a served model's settings, no server"),
    "translate": (
        "chromaflow.serving.translate_files",
        "N samples of a translator (BicycleGAN) for one image, no server",
    ),
    "serve": ("chromaflow.serve", "start / stop TorchServe with an exported archive"),
    "pipeline": ("chromaflow.pipeline", "compile, run locally, or submit a Kubeflow pipeline"),
    "demo": ("chromaflow.demo", "the whole main job on the committed sample, with a report"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser, importing only the module of step ``only`` (none for the top-level help)."""
    parser = argparse.ArgumentParser(prog="chromaflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for name, (module, help_) in STEPS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--portable-kernels", action="store_true",
                       help="CPU float kernels that give the same bytes on every x86-64 machine (1 thread; slower)")  # fmt: skip
        if only == name:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    step = next((a for a in argv if not a.startswith("-")), None)
    if "--portable-kernels" in argv:  # before the step's module is imported: torch picks its kernels once
        use_portable_kernels()
        argv = [a for a in argv if a != "--portable-kernels"]  # taken here: steps with parsers of their own
    parser = build_parser(only=step if step in STEPS else None)
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    from chromaflow.tracking import MLFLOW

    with runlog.using(MLFLOW):
        return int(args._main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
