"""Training in several processes (PyTorch DDP through Lightning): the batch rule, who writes, what is shared.

Lightning does the distributed work: it starts the processes (``--devices 2`` re-runs the same command once per
extra process, with ``LOCAL_RANK`` set), or finds them already started by ``torchrun`` or ``srun`` (its
``TorchElasticEnvironment`` and ``SLURMEnvironment``) and then starts nothing; it picks gloo on CPU and NCCL on GPU,
wraps the network in ``DistributedDataParallel`` and gives each process its shard of the training batches through
its ``DistributedSampler``. This module holds what medlens adds on top:

- **The batch rule** (``train.batch_rule: global``): ``train.batch_size`` and ``optim.lr`` are those of one
  optimiser step over all processes; each of P processes takes ``batch_size / P`` images. A run's optimisation
  (global batch, learning rate, steps per epoch, the schedule) is then the same for any P, which is what lets a run
  resume with another number of processes and what makes 1-process and P-process figures comparable. (Linear
  scaling, lr x P with P times the batch, would change the optimisation with the hardware.)
- **Validation over the whole set**: every process validates every validation case (the loader is not sharded,
  so no case is padded in twice and none is left out), and rank 0's figures are sent to the others, so the
  checkpoint, early-stopping and budget decisions are the same everywhere.
- **Rank 0 writes**: the run folder, summaries, logs, the bundle. Lightning already saves checkpoints from rank 0
  only; the other processes train and then return.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

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

    def trainer_args(self) -> dict[str, Any]:
        """Lightning ``Trainer`` arguments: one device, or DDP over ``devices`` x ``nodes``."""
        if self.world == 1:
            return {"devices": 1, "num_nodes": 1}
        return {"devices": self.devices, "num_nodes": self.nodes, "strategy": "ddp"}

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
        }


def is_rank_zero() -> bool:
    """Whether this is the process that writes: rank 0 as its launcher set it (``RANK`` from torchrun,
    ``SLURM_PROCID`` from srun, ``NODE_RANK`` and ``LOCAL_RANK`` from Lightning's own launcher), or a lone process."""
    return all(os.environ.get(key, "0") in ("", "0") for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"))


def per_process(plan: Plan, processes: Processes) -> Plan:
    """The plan each process builds its training loader from: ``batch_size / P`` images (the batch rule).

    Raises:
        ConfigError: when ``train.batch_size`` is not a multiple of the number of processes.
    """
    p = processes.world
    if p == 1:
        return plan
    if plan.train.privacy is not None:
        raise ConfigError("train.privacy", "DP-SGD trains in one process; run it without --devices/--nodes")
    if plan.train.batch_size % p:
        raise ConfigError(
            "train.batch_size",
            f"{plan.train.batch_size} is the global batch and must divide among {p} processes "
            f"(set it to a multiple of {p}, e.g. {plan.train.batch_size // p * p or p})",
        )
    return plan.model_copy(update={"train": plan.train.model_copy(update={"batch_size": plan.train.batch_size // p})})


def whole_set(loader: DataLoader[Any]) -> DataLoader[Any]:
    """``loader`` with a sampler Lightning leaves alone, so every process reads every case.

    Lightning shards any loader whose sampler is not a ``DistributedSampler``; a one-replica
    ``DistributedSamplerWrapper`` is one, and yields the original order without padding.
    """
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.utilities.data import _update_dataloader  # Lightning's own rebuild, also used for fit

    sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=1, rank=0, shuffle=False)
    return _update_dataloader(loader, sampler)


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
