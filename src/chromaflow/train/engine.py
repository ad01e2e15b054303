"""The one training engine of chromaflow: every method (ch. 2-6) trains through :func:`fit`.

What it does for any :class:`Task`:
- device-agnostic (cuda, mps, cpu; chosen automatically), bf16 autocast + channels_last on CUDA,
  optional ``torch.compile`` of the whole loss (targets + network + loss), gradient accumulation,
  DDP under ``torchrun`` (gloo on CPU; SyncBatchNorm on CUDA);
- one Adam over the model and the task's ``loss``, or, for a task with several optimizers and its own step
  order (a GAN), the task's ``optimizers`` and ``train_step`` (one schedule each; single process, no
  accumulation, compile or clipping for those yet);
- seeded and reproducible: one deterministic global stream of sample indices (epoch ``e`` is
  ``randperm(n)`` seeded by ``seed + e``), sliced per rank, so the data order depends on the step
  only; checkpoints every ``ckpt_every`` steps hold model, optimizer, scheduler, step, history and
  the RNG states (torch, cuda, numpy, python) of every rank, and ``resume`` continues the loss curve
  exactly where an uninterrupted run would be (bit-exact on CPU with ``workers=0``; with workers,
  augmentation randomness is re-seeded per run segment from ``(seed, step, rank)``);
- logs: tqdm on a terminal, periodic lines otherwise; the installed :mod:`chromaflow.runlog` logger (MLflow
  under ``chromaflow train``): params at start, losses every ``log_every`` steps, final metrics and artifacts;
- writes ``<out>/checkpoint.pt`` (resume state, read back with ``weights_only=True``),
  ``<out>/model.safetensors`` (:func:`chromaflow.models.save_weights`), ``<out>/metrics.json``,
  ``<out>/history.csv`` (results only, so the same run gives the same bytes anywhere: DVC hashes them) and
  ``<out>/timing.json`` (wall time, images/s); all atomically. Re-running a finished run is a no-op.

Batch semantics: ``batch_size`` is the GLOBAL batch of one optimizer step; each of the ``world``
processes runs ``grad_accum`` micro-batches of ``batch_size / (world * grad_accum)`` samples.

    from chromaflow.train.engine import TrainConfig, fit
    fit(task, TrainConfig(out="runs/c", steps=1000, batch_size=16, lr=3e-4))
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from chromaflow import runlog
from chromaflow.io import TIMING_FILE, atomic_path, read_json, write_json, write_text
from chromaflow.logs import progress
from chromaflow.models.weights import load_state_strict, save_weights
from chromaflow.train import distributed

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
SCHEDULES = ("constant", "cosine", "step")
AMP_MODES = ("auto", "bf16", "off")


class Task:
    """What a training method provides; the engine does everything else.

    Subclasses implement ``build_model`` and ``loss`` and give the training data (``train_set`` / ``val_set``, or
    ``train_dataset`` / ``val_dataset``); the rest is optional.
    """

    name = "task"
    train_set: Dataset | None = None  # a task built on datasets it holds sets these; others override the methods
    val_set: Dataset | None = None

    def build_model(self) -> nn.Module:
        """A fresh model (built with ``chromaflow.models.create_model`` so it can be saved)."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        """A map-style dataset of training items (the engine owns order and sharding): ``train_set`` by default."""
        if self.train_set is None:
            raise NotImplementedError(f"task {self.name!r}: set train_set or override train_dataset")
        return self.train_set

    def val_dataset(self) -> Dataset | None:
        return self.val_set

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        """``(scalar loss to minimize, extra floats to log)`` for one batch already on the device."""
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        """Default: the mean training loss over the validation set (model in eval mode)."""
        total, n = 0.0, 0
        for batch in loader:
            loss, _ = self.loss(model, to_device(batch, device))
            total, n = total + float(loss), n + 1
        return {"val_loss": total / max(n, 1)}

    def optimizers(self, model: nn.Module, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer] | None:
        """Several optimizers by name, for a task with its own step order (a GAN's G+E and D); such a task
        implements :meth:`train_step` instead of :meth:`loss`. ``None`` (default): the engine's one Adam."""
        return None

    def train_step(
        self, model: nn.Module, batch: Any, optimizers: Mapping[str, torch.optim.Optimizer]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        """One step of a task that owns its optimizers: zero, backward and step each in the task's order;
        return ``(scalar loss to log, extra floats)``. The engine steps one schedule per optimizer."""
        raise NotImplementedError

    def prepare(self, device: torch.device) -> None:
        """Build whatever the loss caches per device (e.g. lookup tables) before ``torch.compile`` traces it."""

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (default: one, at ``lr``); a task may give parts their own lr."""
        return [{"params": list(model.parameters()), "lr": lr}]

    def params(self) -> dict[str, Any]:
        """Hyper-parameters to log and to fingerprint the run with (JSON-serializable)."""
        return {}

    def data_path(self) -> str | list[str] | None:
        """The data this run reads (for MLflow lineage), if any; several inputs as a list, in order."""
        return None


@dataclasses.dataclass
class TrainConfig:
    """Engine settings; every field is also a ``chromaflow train`` flag (see ``train/cli.py``)."""

    out: str
    steps: int = 1000
    batch_size: int = 16  # global batch per optimizer step
    lr: float = 3e-4
    beta1: float = 0.9  # Adam as in the thesis: beta1 0.9, beta2 0.99, weight decay 1e-3
    beta2: float = 0.99
    weight_decay: float = 1e-3
    schedule: str = "constant"  # constant | cosine | step (x0.1 at 2/3 of the steps)
    warmup: int = 0
    grad_accum: int = 1
    clip_grad: float = 0.0  # max grad norm; 0 = off
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 on CUDA only
    channels_last: bool | None = None  # None = on CUDA only
    compile: bool = False
    ckpt_every: int = 0  # 0 = only at the end
    log_every: int = 10
    val_every: int = 0  # 0 = only at the end
    resume: str | None = None  # None | "auto" (out/checkpoint.pt if present) | a path
    workers: int = 0
    experiment: str | None = None  # open an MLflow run in this experiment (else log into an active run, if any)
    run_name: str | None = None
    stop_at: int | None = None  # stop after this step (checkpoint written): time-boxed / preempted runs
    lanes: int = 0  # >0: the train shards split into this many lanes; each rank reads only its lanes' shards

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (self.ckpt_every >= 0 and self.log_every >= 1, "ckpt_every must be >= 0 and log_every >= 1"),
            (self.lanes >= 0, f"lanes must be >= 0, got {self.lanes}"),
            (not self.lanes or (self.batch_size // self.grad_accum) % self.lanes == 0,
             f"lanes ({self.lanes}) must divide the global micro-batch batch_size / grad_accum "
             f"= {self.batch_size} / {self.grad_accum}"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"train config: {msg}")

    def fingerprint(self, task_params: Mapping[str, Any]) -> str:
        """Hash of everything that changes the result (not resume/logging/tracking/stop settings)."""
        ignore = {"resume", "log_every", "experiment", "run_name", "stop_at", "workers", "device"}
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignore}
        if not d["lanes"]:  # the default order: fingerprints of runs from before lanes existed stay valid
            del d["lanes"]
        blob = json.dumps({"engine": d, "task": task_params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- data


class StreamSampler(Sampler[int]):
    """Infinite, deterministic index stream for one rank, starting after ``start`` global micro-batches.

    The global stream is epoch after epoch of ``randperm(n, seed + epoch)`` (the last partial
    global micro-batch of an epoch is dropped); global micro-batch ``b`` is
    ``perm[j*G : (j+1)*G]`` with ``G = micro * world``, and rank ``r`` takes its ``r``-th slice.
    """

    def __init__(self, n: int, micro: int, *, rank: int = 0, world: int = 1, seed: int = 0, start: int = 0):
        self.n, self.micro, self.rank, self.world, self.seed, self.start = n, micro, rank, world, seed, start
        self.per_epoch = n // (micro * world)
        if self.per_epoch < 1:
            raise ValueError(f"dataset has {n} items, fewer than one global micro-batch ({micro} x {world} processes)")

    def __iter__(self) -> Iterator[int]:
        g = self.micro * self.world
        b, epoch, perm = self.start, -1, None
        while True:
            e, j = divmod(b, self.per_epoch)
            if e != epoch:
                epoch, perm = e, torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
            lo = j * g + self.rank * self.micro
            yield from perm[lo : lo + self.micro].tolist()
            b += 1


class LaneSampler(Sampler[int]):
    """Infinite, deterministic index stream of one rank's lanes (``TrainConfig.lanes``), node-count independent.

    The train shards are split into ``L`` lanes (shard ``k`` in lane ``k % L``); global micro-batch ``b``
    is lane 0's ``chunk`` items, then lane 1's, ... (``chunk = global micro-batch / L``), where lane ``l``
    walks epoch after epoch of ``randperm(n_l)`` seeded by ``(seed, l, epoch)``. A rank owning lanes
    ``lanes`` (contiguous, ``L / world`` of them) yields its lanes' chunks in order, as indices into its
    share ``ShardDataset.share(lanes, L)`` whose rows are lane after lane (``sizes``). So the global
    batch of every step is the same for any world size dividing ``L``, and each rank reads only its shards.
    """

    def __init__(self, sizes: list[int], chunk: int, lanes: list[int], *, seed: int = 0, start: int = 0):
        if any(n < chunk for n in sizes):
            raise ValueError(f"lanes {lanes} hold {sizes} items; each needs at least one chunk of {chunk}")
        self.sizes, self.chunk, self.lanes, self.seed, self.start = sizes, chunk, lanes, seed, start

    def __iter__(self) -> Iterator[int]:
        offsets = np.cumsum([0, *self.sizes[:-1]]).tolist()
        perms: dict[int, tuple[int, torch.Tensor]] = {}
        b = self.start
        while True:
            for lane, n, off in zip(self.lanes, self.sizes, offsets, strict=True):
                e, j = divmod(b, n // self.chunk)
                if perms.get(lane, (None,))[0] != e:
                    g = torch.Generator().manual_seed(self.seed + 1_000_003 * (lane + 1) + e)
                    perms[lane] = (e, torch.randperm(n, generator=g))
                yield from (off + perms[lane][1][j * self.chunk : (j + 1) * self.chunk]).tolist()
            b += 1


def lane_share(dataset: Dataset, cfg: TrainConfig, info: distributed.DistInfo, micro: int, start: int):
    """``(this rank's share of dataset, its LaneSampler)`` for ``cfg.lanes`` lanes over ``info.world`` ranks."""
    if cfg.lanes % info.world:
        raise ValueError(f"lanes ({cfg.lanes}) must be a multiple of the number of processes ({info.world})")
    if not hasattr(dataset, "share"):
        raise ValueError(f"lanes need a train set of Parquet shards (ShardDataset), not {type(dataset).__name__}")
    per = cfg.lanes // info.world
    mine = list(range(info.rank * per, (info.rank + 1) * per))
    part = dataset.share(mine, cfg.lanes)
    chunk = micro // per
    return part, LaneSampler(part.group_sizes, chunk, mine, seed=cfg.seed, start=start * cfg.grad_accum)


def _worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor in a (nested) batch to ``device``; 4-D tensors optionally to channels_last."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.ndim == 4 else t
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


# ----------------------------------------------------------------------------------------------- RNG


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors / plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------- optimizer


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant / cosine to 0 / step (x0.1 at 2/3 of the steps)."""

    def factor(step: int) -> float:
        if cfg.warmup and step < cfg.warmup:
            return (step + 1) / cfg.warmup
        if cfg.schedule == "cosine":
            t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "step":
            return 0.1 if step >= (2 * cfg.steps) // 3 else 1.0
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StateGroup:
    """Named optimizers (or schedules) of a task that owns several, checkpointed as ``{name: state_dict}``."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        if not items:
            raise ValueError("Task.optimizers returned no optimizer")
        self.items = dict(items)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return next(iter(self.items.values())).param_groups  # the first one's, for the logged lr

    def step(self) -> None:
        for item in self.items.values():
            item.step()

    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.items.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != set(self.items):
            raise ValueError(f"resume: checkpoint has optimizers {sorted(state)}, the task has {sorted(self.items)}")
        for k, v in self.items.items():
            v.load_state_dict(state[k])


def _check_own_step(cfg: TrainConfig, info: distributed.DistInfo) -> None:
    """What a task stepping its own optimizers does not support (yet): name the setting."""
    for bad, what in (
        (cfg.grad_accum != 1, f"grad_accum {cfg.grad_accum} (must be 1)"),
        (cfg.compile, "compile"),
        (cfg.clip_grad > 0, f"clip_grad {cfg.clip_grad} (must be 0)"),
        (info.distributed, f"{info.world} processes (must be 1)"),
    ):
        if bad:
            raise ValueError(f"train config: a task with its own optimizers does not support {what}")


# ---------------------------------------------------------------------------------------- the engine


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (``weights_only=True``: tensors and plain values only)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"resume: {path}: not a readable chromaflow checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: {path}: unknown checkpoint format (expected format {CHECKPOINT_FORMAT})")
    return ckpt


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(history)
    write_text(path, buf.getvalue())


def _gather_rng(info: distributed.DistInfo) -> list[dict[str, Any]]:
    mine = rng_state()
    if not info.distributed:
        return [mine]
    allr: list[Any] = [None] * info.world
    dist.all_gather_object(allr, mine)
    return allr


def fit(task: Task, cfg: TrainConfig) -> dict[str, Any]:
    """Train ``task`` under ``cfg``; return the final metrics (also written to ``<out>/metrics.json``)."""
    cfg.validate()
    info = distributed.setup(cfg.device)
    out = Path(cfg.out)
    params = task.params()
    fingerprint = cfg.fingerprint({"task": task.name, **params})
    done = out / "metrics.json"
    if cfg.stop_at is None and done.is_file() and (out / "model.safetensors").is_file():
        prev = read_json(done)
        if prev.get("fingerprint") == fingerprint and prev.get("step") == cfg.steps:
            log.info("%s: finished run with the same settings found (fingerprint %s): nothing to do", out, fingerprint)
            timing = out / TIMING_FILE
            return {**prev, **(read_json(timing) if timing.is_file() else {})}

    world, dev = info.world, info.device
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(
            f"batch_size {cfg.batch_size} is not divisible by processes x grad_accum = {world} x {cfg.grad_accum}"
        )
    micro = cfg.batch_size // (world * cfg.grad_accum)
    cuda = dev.type == "cuda"
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last

    seed_all(cfg.seed)  # identical initial weights on every rank
    model = task.build_model()
    if info.distributed and cuda:  # batch statistics over the global batch, as in a single-process run
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    own = task.optimizers(model, cfg)
    if own is None:
        optimizer = torch.optim.Adam(
            task.param_groups(model, cfg.lr), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
        )
        scheduler = make_schedule(optimizer, cfg)
    else:  # the task steps them in its own order (Task.train_step); one schedule each
        _check_own_step(cfg, info)
        optimizer = StateGroup(own)
        scheduler = StateGroup({k: make_schedule(o, cfg) for k, o in own.items()})
    seed_all(cfg.seed + 1_000_003 * info.rank)  # per-rank stream for augmentation etc.

    start, history = 0, []
    ckpt_path = out / "checkpoint.pt"
    resume = cfg.resume
    if resume == "auto":
        resume = str(ckpt_path) if ckpt_path.is_file() else None
        if resume is None:
            log.info("resume=auto: no checkpoint at %s, starting fresh", ckpt_path)
    if resume:
        if not Path(resume).is_file():
            raise FileNotFoundError(f"resume: checkpoint {resume} does not exist")
        ckpt = load_checkpoint(resume)
        if ckpt["task"] != task.name:
            raise ValueError(f"resume: {resume} was written by task {ckpt['task']!r}, not {task.name!r}")
        for key in ("batch_size", "grad_accum", "seed"):
            if ckpt["config"].get(key) != getattr(cfg, key):
                log.warning("resume: %s differs (%r -> %r): the run will not match an uninterrupted one",
                            key, ckpt["config"].get(key), getattr(cfg, key))  # fmt: skip
        load_state_strict(model, ckpt["model"], source=f"{resume} (model)")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, history = int(ckpt["step"]), list(ckpt["history"])
        rngs = ckpt["rng"]
        if len(rngs) == world:
            set_rng_state(rngs[info.rank])
        else:
            log.warning("resume: checkpoint has RNG states of %d processes, this run has %d", len(rngs), world)
        log.info("resumed from %s at step %d", resume, start)

    raw_model = model
    fwd: nn.Module = model
    if info.distributed:
        fwd = nn.parallel.DistributedDataParallel(fwd, device_ids=[dev.index] if cuda else None)
    # --compile: the whole loss (the task's targets + network + loss), not the network alone
    task.prepare(dev)
    loss_fn = torch.compile(task.loss) if cfg.compile else task.loss

    train_set = task.train_dataset()
    if cfg.lanes:
        train_set, sampler = lane_share(train_set, cfg, info, micro, start)
    else:
        sampler = StreamSampler(
            len(train_set), micro, rank=info.rank, world=world, seed=cfg.seed, start=start * cfg.grad_accum
        )
    loader = DataLoader(
        train_set,
        batch_size=micro,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=task.collate,
        pin_memory=cuda,
        worker_init_fn=_worker_init if cfg.workers else None,
        persistent_workers=cfg.workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + start * 7919 + info.rank),
    )
    val_set = task.val_dataset() if info.is_main else None
    val_loader = (
        DataLoader(val_set, batch_size=micro, shuffle=False, num_workers=cfg.workers, collate_fn=task.collate)
        if val_set is not None and len(val_set)
        else None
    )

    n_params = sum(p.numel() for p in raw_model.parameters())
    run_params = {"task": task.name, **params, **dataclasses.asdict(cfg), "world": world, "device": str(dev),
                  "amp_bf16": amp, "micro_batch": micro, "n_params": n_params}  # fmt: skip
    log.info("%s: %d params, %d step(s) from %d, global batch %d (%d x %d procs x %d accum) on %s%s",
             task.name, n_params, cfg.steps - start, start, cfg.batch_size, micro, world, cfg.grad_accum, dev,
             " bf16" if amp else "")  # fmt: skip

    tracker = runlog.current()
    run_ctx = (
        tracker.open_run(cfg.experiment, run_name=cfg.run_name, params=run_params, data=task.data_path())
        if cfg.experiment and info.is_main
        else contextlib.nullcontext()
    )
    with run_ctx:
        if info.is_main and not cfg.experiment:
            tracker.log_params(run_params)
        metrics = _loop(task, cfg, info, raw_model, fwd, loss_fn, optimizer, scheduler, loader, val_loader, start, history,
                        amp=amp, channels_last=channels_last, fingerprint=fingerprint, n_params=n_params)  # fmt: skip
    distributed.barrier()
    return metrics


def _loop(task, cfg, info, raw_model, fwd, loss_fn, optimizer, scheduler, loader, val_loader, start, history, *,
          amp, channels_last, fingerprint, n_params) -> dict[str, Any]:  # fmt: skip
    dev, out = info.device, Path(cfg.out)
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp)
    val_metrics: dict[str, float] = {}
    tracker = runlog.current()

    def checkpoint(step: int) -> None:
        rngs = _gather_rng(info)  # collective: every rank takes part
        if info.is_main:
            _save_checkpoint(out / "checkpoint.pt", {
                "format": CHECKPOINT_FORMAT, "task": task.name, "step": step, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs,
                "history": history, "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
                "fingerprint": fingerprint,
            })  # fmt: skip
            _write_history(out / "history.csv", history)

    def run_validation(step: int) -> None:
        if val_loader is None:
            return
        raw_model.eval()
        with autocast:
            val_metrics.update(task.validate(raw_model, val_loader, dev))
        raw_model.train()
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in val_metrics.items()))
        tracker.log_metrics(val_metrics, step=step)

    it = iter(loader)
    fwd.train()
    t_start = time.perf_counter()
    t_first = None  # time after the first step (compile / warm-up excluded from throughput)
    own_step = isinstance(optimizer, StateGroup)
    for step in progress(range(start, end), total=end - start, desc=f"train {task.name}"):
        extras: dict[str, float] = {}
        if own_step:  # the task zeroes, back-propagates and steps its optimizers itself
            with autocast:
                loss, logs = task.train_step(fwd, to_device(next(it), dev, channels_last), optimizer.items)
            loss_sum, extras = loss.detach().float(), {name: float(v) for name, v in logs.items()}
        else:
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=dev)
            for k in range(cfg.grad_accum):
                batch = to_device(next(it), dev, channels_last)
                sync = k == cfg.grad_accum - 1 or not isinstance(fwd, nn.parallel.DistributedDataParallel)
                with contextlib.nullcontext() if sync else fwd.no_sync():
                    with autocast:
                        loss, logs = loss_fn(fwd, batch)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach().float()
                for name, v in logs.items():
                    extras[name] = extras.get(name, 0.0) + float(v) / cfg.grad_accum
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.clip_grad)
        loss_val = float(distributed.all_reduce_mean(loss_sum / cfg.grad_accum))
        if not math.isfinite(loss_val):
            checkpoint(step)  # the state before this step's update (after it, for a task stepping its own), to inspect
            when = "after" if own_step else "before"
            raise FloatingPointError(f"step {step + 1}: loss is {loss_val}; the state {when} it is in {out}")
        lr = optimizer.param_groups[0]["lr"]
        if not own_step:
            optimizer.step()
        scheduler.step()
        now = time.perf_counter()
        t_first = t_first or now
        history.append({"step": step + 1, "loss": loss_val, "lr": lr, **extras})  # no clock: a hashed output
        if info.is_main and ((step + 1) % cfg.log_every == 0 or step + 1 == end):
            tracker.log_metrics({"loss": loss_val, "lr": lr, **extras}, step=step + 1)
            log.debug("step %d loss %.4f lr %.3g", step + 1, loss_val, lr)
        if cfg.val_every and (step + 1) % cfg.val_every == 0 and step + 1 < cfg.steps:
            run_validation(step + 1)
        if cfg.ckpt_every and (step + 1) % cfg.ckpt_every == 0 and step + 1 < end:
            checkpoint(step + 1)
    t_end = time.perf_counter()
    wall = t_end - t_start
    checkpoint(end)
    if end < cfg.steps:
        log.info("stopped at step %d of %d (stop_at); resume with --resume", end, cfg.steps)
        return {"step": end, "stopped": True, "loss": history[-1]["loss"] if history else None}

    run_validation(end)
    done = end - start
    timed = max(done - 1, 0)
    metrics = {
        "task": task.name,
        "step": end,
        "fingerprint": fingerprint,
        "world": info.world,
        "device": str(dev),
        "n_params": n_params,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": float(np.mean([h["loss"] for h in history[-10:]])) if history else None,
        **val_metrics,
    }
    timing = {"wall_s": wall, "images_per_s": cfg.batch_size * timed / (t_end - t_first) if timed and t_first else None}
    if info.is_main:
        metrics["model_sha256"] = save_weights(raw_model, out / "model.safetensors")
        write_json(out / "metrics.json", metrics)
        write_json(out / TIMING_FILE, timing)
        metrics |= timing
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)}, step=end)
        for name in ("model.safetensors", "metrics.json", TIMING_FILE, "history.csv"):
            tracker.log_artifact(out / name)
        log.info("%s: done, final loss %.4f; outputs in %s", task.name, metrics["final_loss"], out)
    return metrics
