"""``chromaflow train --task NAME ...``: engine flags here, task flags from ``chromaflow.train.tasks.NAME``.

chromaflow train --task colorization --data runs/demo/prepared --out runs/demo/train --steps 2000
torchrun --nproc-per-node 2 -m chromaflow.cli train --task colorization ... # DDP
chromaflow train --task colorization ... --resume          # continue from <out>/checkpoint.pt
chromaflow train --task colorization ... --launcher kubeflow --num-nodes 2 --gpus-per-node 8 --image I  # TrainJob
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any

from chromaflow.train import remote, tasks, trainjob

log = logging.getLogger(__name__)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`chromaflow.train.engine.TrainConfig`."""
    g = parser.add_argument_group("engine")
    g.add_argument("--out", help="output folder (checkpoint.pt, model.safetensors, metrics.json, history.csv)")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    g.add_argument("--batch-size", type=int, default=16, help="GLOBAL batch per step (all processes)")
    g.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.99)
    g.add_argument("--weight-decay", type=float, default=1e-3)
    g.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant")
    g.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    g.add_argument("--clip-grad", type=float, default=0.0, help="max grad norm (0 = off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto", help="auto = bf16 autocast on CUDA")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on CUDA only")  # fmt: skip
    g.add_argument("--compile", action="store_true", help="torch.compile the step's loss: targets + model + loss")
    g.add_argument("--ckpt-every", type=int, default=0, help="checkpoint every N steps (0 = at the end)")
    g.add_argument("--log-every", type=int, default=10, help="log / MLflow every N steps")
    g.add_argument("--val-every", type=int, default=0, help="validate every N steps (0 = at the end)")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from PATH, or from <out>/checkpoint.pt when given without a value")  # fmt: skip
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--experiment", help="MLflow experiment to open a run in (default: log into an active run only)")
    g.add_argument("--run-name", help="MLflow run name")
    g.add_argument("--stop-at", type=int, help="stop (with a checkpoint) after this step; resume later")
    g.add_argument("--lanes", type=int, default=0,
                   help="split the train shards into this many lanes (a multiple of the process count); each "
                   "process reads only its lanes' shards and the global batch is the same for any process count")  # fmt: skip


def config_from_args(args: argparse.Namespace):
    """``TrainConfig`` from the parsed flags."""
    from chromaflow.train.engine import TrainConfig

    if not getattr(args, "out", None):
        raise ValueError("--out is required (the folder the run writes)")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Engine flags, ``--task``, and (once ``--task NAME`` is seen) the task's own flags."""
    parser.add_argument("--task", required=True, help=f"training task: {', '.join(tasks.available())}")
    add_engine_arguments(parser)
    trainjob.add_arguments(parser)
    base = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # two-phase: find --task, add its flags, parse
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--task")
        name = pre.parse_known_args(args)[0].task
        if name and getattr(parser, "_chromaflow_task", None) is None:
            tasks.load(name).add_arguments(parser.add_argument_group(f"task {name}"))
            parser._chromaflow_task = name
        return base(args, namespace)

    parser.parse_known_args = parse_known_args


def task_parser(task: str) -> argparse.ArgumentParser:
    """The flags of ``chromaflow train --task TASK``: engine, launcher and the task's own."""
    parser = argparse.ArgumentParser(prog=f"chromaflow train --task {task}")
    add_engine_arguments(parser)
    trainjob.add_arguments(parser)
    tasks.load(task).add_arguments(parser)
    return parser


def launch(args: argparse.Namespace) -> dict[str, Any]:
    """``--launcher kubeflow``: the same run as a TrainJob; wait for it, return its ``metrics.json``."""
    from chromaflow.io import write_json

    config_from_args(args).validate()  # bad settings fail here, not on the cluster
    argv = ["--task", args.task, *trainjob.node_argv(args, task_parser(args.task))]
    trainer = trainjob.custom_trainer(argv, image=args.image, num_nodes=args.num_nodes,
                                      gpus_per_node=args.gpus_per_node, env=trainjob.node_env(args.backend))  # fmt: skip
    if args.render:
        write_json(args.render, trainjob.render_trainjob(trainer, args.runtime))
        log.info("TrainJob written to %s (not submitted)", args.render)
        return {}
    if args.backend != "process" and not args.image:
        raise ValueError("--image is required with --launcher kubeflow (the image every node runs)")
    trainjob.submit(trainer, backend=args.backend, runtime=args.runtime, timeout=args.job_timeout)
    return remote.read_metrics(args.out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the task and the config from ``args`` and train (the library path of the step)."""
    from chromaflow.train import distributed
    from chromaflow.train.engine import fit

    if getattr(args, "launcher", "local") == "kubeflow":
        return launch(args)

    task = tasks.load(args.task).build(args)
    try:
        with remote.staged(args.out, upload=int(os.environ.get("RANK", "0")) == 0) as out:  # only rank 0 writes
            return fit(task, config_from_args(argparse.Namespace(**{**vars(args), "out": out})))
    finally:
        distributed.cleanup()


def main(args: argparse.Namespace) -> int:
    try:
        metrics = run(args)
    except (ValueError, FileNotFoundError) as e:
        log.error("train: %s", e)
        return 2
    log.info("train: final loss %s", metrics.get("final_loss", metrics.get("loss")))
    return 0
