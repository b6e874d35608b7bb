"""Training in several processes (PyTorch DDP through Lightning): the batch rule, who writes, what is shared.

Lightning does the distributed work: it starts the processes (``--devices 2`` re-runs the same command once per
extra process, with ``LOCAL_RANK`` set), or finds them already started by ``torchrun`` or ``srun`` (its
``TorchElasticEnvironment`` and ``SLURMEnvironment``) and then starts nothing; it picks gloo on CPU and NCCL on GPU,
wraps the network in ``DistributedDataParallel`` and averages the gradients. This module holds what medlens adds:

- **The batch rule** (``train.batch_rule: global``): ``train.batch_size`` and ``optim.lr`` are those of one
  optimiser step over all processes; each of P processes takes ``batch_size / P`` images. A run's optimisation
  (global batch, learning rate, steps per epoch, the schedule) is then the same for any P, which is what lets a run
  resume with another number of processes and what makes 1-process and P-process figures comparable. (Linear
  scaling, lr x P with P times the batch, would change the optimisation with the hardware.) :func:`shard` deals
  each global batch of the task's own loader out to the processes, so together they train the very batches one
  process would. What still differs: BatchNorm statistics are each process's (batch_size / P images), not synced.
- **Validation over the whole set**: every process validates every validation case (the validation loader is not
  sharded, so no case is padded in twice and none is left out; validation does not get faster with P), and rank 0's
  figures are sent to the others (:class:`RankZeroFigures`), so the checkpoint and early-stopping decisions are the
  same everywhere; the budget's clock is agreed too (:mod:`medlens.training.budget`).
- **Rank 0 writes**: the run folder, summaries, logs, the bundle. Lightning already saves checkpoints from rank 0
  only; the other processes train and then return.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler

from medlens.core.errors import ConfigError
from medlens.training.plan import Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    """How many processes train: ``devices`` per node (GPUs, or CPU processes) on ``nodes`` nodes."""

    devices: int = 1
    nodes: int = 1
    strategy: Literal["auto", "ddp"] = "auto"

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError("--devices", f"must be at least 1, got {self.devices}")
        if self.nodes < 1:
            raise ConfigError("--nodes", f"must be at least 1, got {self.nodes}")

    @property
    def world(self) -> int:
        """The number of processes over all nodes."""
        return self.devices * self.nodes

    def rank(self) -> int:
        """This process's global rank as its launcher set it: ``RANK`` (torchrun), ``SLURM_PROCID`` (srun), or
        ``NODE_RANK`` x devices + ``LOCAL_RANK`` (Lightning's own launcher; 0 before it has started the others)."""
        for key in ("RANK", "SLURM_PROCID"):
            if os.environ.get(key, "").isdigit():
                return int(os.environ[key])
        node, local = (int(os.environ.get(k, "0") or 0) for k in ("NODE_RANK", "LOCAL_RANK"))
        return node * self.devices + local

    def trainer_args(self) -> dict[str, Any]:
        """Lightning ``Trainer`` arguments: one device, or DDP over ``devices`` x ``nodes``."""
        if self.world == 1:
            return {"devices": 1, "num_nodes": 1}
        # the samplers are medlens's (shard): Lightning's own replacement is off, so validation is not sharded
        return {
            "devices": self.devices,
            "num_nodes": self.nodes,
            "strategy": "ddp",
            "use_distributed_sampler": False,
            "sync_batchnorm": sync_batchnorm(),
        }

    def facts(self, plan: Plan) -> dict[str, Any]:
        """What a member summary records about this session's processes and the batch rule."""
        return {
            "processes": self.world,
            "devices": self.devices,
            "nodes": self.nodes,
            "batch_rule": plan.train.batch_rule,
            "global_batch": plan.train.batch_size,
            "batch_per_process": plan.train.batch_size // self.world,
            "lr": plan.optim.lr,
            "sync_batchnorm": self.world > 1 and sync_batchnorm(),
        }


def sync_batchnorm() -> bool:
    """Whether batch norm's statistics are shared across processes (Lightning's ``sync_batchnorm``): on GPUs, so a
    process's share of the global batch normalises as the whole batch would. PyTorch's ``SyncBatchNorm`` runs on
    GPUs only; on CPUs each process normalises its own share (the batch per process is recorded)."""
    import torch

    return torch.cuda.is_available()


def is_rank_zero() -> bool:
    """Whether this is the process that writes: rank 0 as its launcher set it (``RANK`` from torchrun,
    ``SLURM_PROCID`` from srun, ``NODE_RANK`` and ``LOCAL_RANK`` from Lightning's own launcher), or a lone process."""
    return all(os.environ.get(key, "0") in ("", "0") for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"))


def check_batch(plan: Plan, processes: Processes) -> None:
    """Refuse what several processes cannot train: a global batch that does not divide among them, DP-SGD.

    Raises:
        ConfigError: naming ``train.batch_size`` or ``train.privacy``.
    """
    p = processes.world
    if p == 1:
        return
    if plan.train.privacy is not None:
        raise ConfigError("train.privacy", "DP-SGD trains in one process; run it without --devices/--nodes")
    if plan.train.batch_size % p:
        raise ConfigError(
            "train.batch_size",
            f"{plan.train.batch_size} is the global batch and must divide among {p} processes "
            f"(set it to a multiple of {p}, e.g. {max(p, plan.train.batch_size // p * p)})",
        )


def shard(loader: DataLoader[Any], processes: Processes) -> DataLoader[Any]:
    """The task's training ``loader`` (global batches) as this process's share: each global batch dealt out, so
    process r takes ``batch_size / P`` of its images and the P processes together train exactly the batches one
    process would (the same seeded draws, the same steps per epoch).

    A loader that batches its sampler's draws (``batch_size`` set) gets Lightning's ``DistributedSamplerWrapper``
    around that sampler (draws r, r + P, ...) and batches of ``batch_size / P``; a loader whose sampler yields whole
    batches of indices (the in-memory whole-image loader) has each batch split by :class:`DealtBatches`. A task's
    sampler keeps its meaning either way (segmentation's draws with replacement, ``iterations_per_epoch`` long),
    where Lightning's automatic replacement would swap a ``RandomSampler`` for a plain pass over the dataset.
    """
    p, rank = processes.world, processes.rank()
    if loader.batch_size is None:  # the sampler yields lists of indices: one global batch each
        return DataLoader(
            loader.dataset, sampler=DealtBatches(loader.sampler, p, rank), batch_size=None,
            num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
            persistent_workers=loader.persistent_workers,
        )  # fmt: skip
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    if loader.batch_size % p:
        raise ConfigError("train.batch_size", f"{loader.batch_size} does not divide among {p} processes")
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // p,
        sampler=DistributedSamplerWrapper(loader.sampler, num_replicas=p, rank=rank, shuffle=False),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        persistent_workers=loader.persistent_workers,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )


class DealtBatches(Sampler[list[int]]):
    """Process ``rank``'s part (every P-th index) of each batch a batch sampler yields. Hand-written: Lightning's
    and PyTorch's distributed samplers deal out whole items, which here are whole global batches."""

    def __init__(self, batches: Any, processes: int, rank: int) -> None:
        self.batches, self.processes, self.rank = batches, processes, rank

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield list(batch)[self.rank :: self.processes]

    def __len__(self) -> int:
        return len(self.batches)


class RankZeroFigures(pl.Callback):
    """After each validation, every process takes rank 0's logged figures (its network is the one saved), so the
    best checkpoint, early stopping and the log agree across processes. Runs before those callbacks."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        figures = {k: v for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
        names = sorted(figures)
        values = torch.stack([figures[k].detach().float().reshape(()) for k in names]) if names else None
        if values is None:
            return
        values = trainer.strategy.broadcast(values.to(pl_module.device), src=0)
        for name, value in zip(names, values, strict=True):
            trainer.callback_metrics[name] = value.cpu()


def rank_zero_first(prepare: Callable[[], None]) -> None:
    """Run ``prepare`` (making the run folder) on rank 0 while the others wait, when ``torchrun`` or ``srun``
    started every process at once; otherwise (one process, or Lightning's launcher, which starts the others only
    when rank 0 begins training) rank 0 just runs it.

    The process group is opened here with the address and backend Lightning would use; Lightning then finds it
    open and keeps it.
    """
    environment = external_environment()
    if environment is None:
        if is_rank_zero():
            prepare()
        return
    if not torch.distributed.is_initialized():
        os.environ["MASTER_ADDR"] = environment.main_address
        os.environ["MASTER_PORT"] = str(environment.main_port)
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(environment.local_rank())
        torch.distributed.init_process_group(
            backend, rank=environment.global_rank(), world_size=environment.world_size()
        )
    if environment.global_rank() == 0:
        prepare()
    torch.distributed.barrier()


def external_environment() -> Any:
    """Lightning's cluster environment when ``torchrun`` or ``srun`` started several processes, else None."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return TorchElasticEnvironment()
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return SLURMEnvironment()
    return None
