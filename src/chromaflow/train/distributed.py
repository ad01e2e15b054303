"""Device choice and torchrun/DDP set-up, isolated from the engine (torchvision-references style).

Single process: ``setup()`` returns rank 0 of 1 on the best device (cuda, then mps, then cpu).
Under ``torchrun --nproc-per-node N``: the env vars RANK / WORLD_SIZE / LOCAL_RANK select the
process group (nccl on CUDA, gloo otherwise) and ``cuda:LOCAL_RANK``.

    torchrun --nproc-per-node 2 -m chromaflow.cli train --task colorization --data D --out O
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from chromaflow.models.inference import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> DistInfo:
    """Initialize the process group when launched by torchrun (idempotent); return this process's place."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        log.info("process group: rank %d/%d on %s (%s)", rank, world, dev, backend)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Destroy the process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all processes (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value
