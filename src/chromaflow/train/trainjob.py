"""Training on N nodes through Kubeflow Trainer: the same ``chromaflow train`` as a TrainJob.

Kubeflow Trainer (``trainer.kubeflow.org/v1alpha1``) starts ``torchrun`` on every node of a TrainJob and
sets the rendezvous (``PET_NNODES``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_NPROC_PER_NODE``); we
submit through its Python SDK (``kubeflow.trainer.TrainerClient``) with a ``CustomTrainer`` whose function
runs ``chromaflow train ARGV`` in our image, so the engine's torchrun/DDP path does the rest:

    chromaflow train --task colorization --data s3://b/prepared --out /mnt/runs/c --steps 20000 \
        --batch-size 512 --lanes 16 --launcher kubeflow --num-nodes 2 --gpus-per-node 8 --image REG/chromaflow:V

Backends (the SDK's): ``kubernetes`` (the cluster of the current kube context), ``container``
(docker/podman on this machine, one container per node), ``process`` (one local process; tests).
``render_trainjob`` gives the TrainJob object the Kubernetes backend would create (``--render PATH``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import string
import sys
from typing import Any

log = logging.getLogger(__name__)

RUNTIME = "torch-distributed"  # the Trainer's ClusterTrainingRuntime that runs torchrun on each node
BACKENDS = ("kubernetes", "container", "process")
FORWARD_ENV = ("MLFLOW_TRACKING_URI", "CHROMAFLOW_PIPELINE_RUN_ID", "MLFLOW_EXPERIMENT_NAME")
LAUNCH_FLAGS = ("launcher", "num_nodes", "gpus_per_node", "runtime", "image", "backend", "render", "job_timeout")


def chromaflow_train(argv=None, **_):  # no annotations: this source runs alone, without the imports here
    """The TrainJob's function, run by ``torchrun`` on every node: ``chromaflow train *argv``.

    Its source is copied into the TrainJob (self-contained). The SDK calls it as ``f(**{"argv": ...})``
    on Kubernetes and as ``f({"argv": ...})`` in its process backend: both are accepted.
    """
    import subprocess
    import sys

    argv = argv["argv"] if isinstance(argv, dict) else argv
    # the CLI as a command (torchrun's RANK/WORLD_SIZE/MASTER_* are inherited): the train layer imports no cli
    code = subprocess.call([sys.executable, "-m", "chromaflow.cli", "train", *argv])
    if code:
        sys.exit(code)


def node_env(backend: str) -> dict[str, str]:
    """What the nodes need from here: the MLflow server and KFP run id; all of this environment for ``process``.

    (The SDK's process backend starts the job with exactly the given environment, in a fresh venv that
    sees this interpreter's packages through ``PYTHONPATH``.)
    """
    if backend == "process":
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}


def custom_trainer(argv: list[str], *, image: str | None, num_nodes: int, gpus_per_node: int, env=None, **extra):
    """A ``kubeflow.trainer.CustomTrainer`` running ``chromaflow train argv`` on ``num_nodes`` nodes.

    ``extra``: more ``CustomTrainer`` fields (``packages_to_install``, ``pip_index_urls``).
    """
    from kubeflow.trainer import CustomTrainer

    if num_nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"--num-nodes must be >= 1 and --gpus-per-node >= 0, got {num_nodes}, {gpus_per_node}")
    return CustomTrainer(
        func=chromaflow_train,
        func_args={"argv": list(argv)},
        image=image,
        num_nodes=num_nodes,
        resources_per_node={"gpu": gpus_per_node} if gpus_per_node else None,
        env=env,
        **extra,
    )


def render_trainjob(trainer, runtime: str = RUNTIME, name: str | None = None) -> dict[str, Any]:
    """The TrainJob (a plain dict, as sent to the API server) for ``trainer`` on ClusterTrainingRuntime ``runtime``.

    Built with the SDK's own functions for a torch runtime (``torchrun`` entrypoint), as
    ``KubernetesBackend.train`` does after reading the runtime from the cluster.
    """
    from kubeflow.trainer.backends.kubernetes import utils
    from kubeflow.trainer.constants import constants
    from kubeflow.trainer.types import types
    from kubeflow_trainer_api import models

    rt_trainer = types.RuntimeTrainer(
        trainer_type=types.TrainerType.CUSTOM_TRAINER, framework="torch", image=trainer.image or ""
    )
    rt_trainer.set_command(constants.TORCH_COMMAND)
    rt = types.Runtime(name=runtime, trainer=rt_trainer, kind=types.RuntimeKind.CLUSTER_TRAINING_RUNTIME)
    name = name or random.choice(string.ascii_lowercase) + "".join(random.choices("0123456789abcdef", k=11))
    job = models.TrainerV1alpha1TrainJob(
        apiVersion=constants.API_VERSION,
        kind=constants.TRAINJOB_KIND,
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(name=name),
        spec=models.TrainerV1alpha1TrainJobSpec(
            runtimeRef=models.TrainerV1alpha1RuntimeRef(name=rt.name, kind=rt.kind.value),
            trainer=utils.get_trainer_cr_from_custom_trainer(rt, trainer),
        ),
    )
    return job.to_dict()


def client(backend: str = "kubernetes", config: dict | None = None):
    """A ``TrainerClient`` on one of :data:`BACKENDS`; ``config``: fields of that backend's config class
    (e.g. ``namespace`` for kubernetes; ``container_host``, ``runtime_source`` for container)."""
    from kubeflow.trainer import (
        ContainerBackendConfig,
        KubernetesBackendConfig,
        LocalProcessBackendConfig,
        TrainerClient,
    )

    configs = {"kubernetes": KubernetesBackendConfig, "container": ContainerBackendConfig,
               "process": LocalProcessBackendConfig}  # fmt: skip
    if backend not in configs:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    return TrainerClient(backend_config=configs[backend](**(config or {})))


def submit(trainer, *, backend: str = "kubernetes", runtime: str = RUNTIME, timeout: int = 24 * 3600, echo=print,
           config: dict | None = None):  # fmt: skip
    """Create the TrainJob, stream node 0's log through ``echo``, wait; return the job (raises if it failed)."""
    from kubeflow.trainer.constants import constants

    c = client(backend, config)
    name = c.train(runtime=runtime, trainer=trainer)
    log.info("TrainJob %s submitted (%s backend, runtime %s, %s node(s))", name, backend, runtime, trainer.num_nodes)
    for line in c.get_job_logs(name, follow=True):
        echo(line.rstrip("\n"))
    job = c.wait_for_job_status(name, status={constants.TRAINJOB_COMPLETE, constants.TRAINJOB_FAILED},
                                timeout=timeout)  # fmt: skip
    if job.status != constants.TRAINJOB_COMPLETE:
        raise RuntimeError(f"TrainJob {name} ended {job.status}: see `kubectl describe trainjob {name}`")
    log.info("TrainJob %s: %s", name, job.status)
    return job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and the TrainJob's flags."""
    g = parser.add_argument_group("launcher")
    g.add_argument("--launcher", choices=("local", "kubeflow"), default="local",
                   help="local: train in this process (or under your torchrun); kubeflow: submit a TrainJob")  # fmt: skip
    g.add_argument("--num-nodes", type=int, default=1, help="kubeflow: nodes of the TrainJob")
    g.add_argument("--gpus-per-node", type=int, default=0, help="kubeflow: GPUs per node (one process each)")
    g.add_argument("--runtime", default=RUNTIME, help="kubeflow: the ClusterTrainingRuntime")
    g.add_argument("--image", help="kubeflow: the image the nodes run (the project's image, `make image`)")
    g.add_argument("--backend", choices=BACKENDS, default="kubernetes", help="kubeflow: the SDK backend")
    g.add_argument("--render", help="kubeflow: write the TrainJob as JSON to this file and submit nothing")
    g.add_argument("--job-timeout", type=int, default=24 * 3600, help="kubeflow: seconds to wait for the TrainJob")


def node_argv(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags that reproduce ``args`` under ``parser`` (non-default values only), launcher flags left out."""
    out: list[str] = []
    for a in parser._actions:
        if not a.option_strings or a.dest in LAUNCH_FLAGS or a.dest == "help" or not hasattr(args, a.dest):
            continue
        v, flag = getattr(args, a.dest), next(s for s in a.option_strings if s.startswith("--"))
        if v == a.default:
            continue
        if isinstance(a, argparse.BooleanOptionalAction):
            out.append(flag if v else f"--no-{flag[2:]}")
        elif a.nargs == 0:  # store_true / store_false
            out.append(flag)
        elif isinstance(v, list | tuple):
            out += [x for item in v for x in (flag, str(item))] if isinstance(a, argparse._AppendAction) else [
                flag, *map(str, v)]  # fmt: skip
        elif a.nargs == "?" and v == a.const:
            out.append(flag)
        else:
            out += [flag, str(v)]
    return out
