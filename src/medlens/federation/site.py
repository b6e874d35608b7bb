"""A site of a federation: a Flower client that trains the task's own module on the site's cases.

Each round the server sends the global weights and a configuration (the plan as JSON, the round, the round's
time budget, the local epochs, FedProx's ``proximal_mu``). The site loads the weights into the task's module and
trains with :func:`medlens.training.fitting.fit_member`, the same fit as ``medlens train`` (its checkpoints and
logs stay in the site's folder), then returns the weights of its last step, the number of its training cases, and
facts about itself (sizes, label mix, the local validation figure, and with ``train.privacy`` the epsilon spent so
far over its rounds). Images, cases and per-case outputs never leave the site.

On the last round the calibrating site (the first, unless told otherwise) also chooses the operating point with
the task's own ``calibrate`` on its validation cases, and sends the chosen numbers (threshold, temperature, ...),
not the cases.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import json_text, write_json
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset
from medlens.federation.sites import Site
from medlens.tasks.base import Task, parse_plan
from medlens.training.members import Member
from medlens.training.plan import Plan

log = logging.getLogger(__name__)


def state_arrays(net: nn.Module) -> list[np.ndarray]:
    """The network's state (parameters and buffers) as numpy arrays in ``state_dict`` order: what travels."""
    return [v.detach().cpu().numpy() for v in net.state_dict().values()]


def load_arrays(net: nn.Module, arrays: list[np.ndarray]) -> None:
    """Load arrays from :func:`state_arrays` order into ``net``, each cast back to its tensor's dtype (an average
    of integer counters comes back as a float).

    Raises:
        InputError: when the arrays do not match the network (another plan's weights).
    """
    state = net.state_dict()
    if len(arrays) != len(state):
        raise InputError("federation", f"received {len(arrays)} tensors for a network of {len(state)}")
    new = {}
    for (key, old), value in zip(state.items(), arrays, strict=True):
        if tuple(value.shape) != tuple(old.shape):
            raise InputError("federation", f"received shape {tuple(value.shape)} for {key} {tuple(old.shape)}")
        new[key] = torch.from_numpy(np.asarray(value)).to(old.dtype)
    net.load_state_dict(new)


def proximal(module: Any, anchor: list[torch.Tensor], mu: float) -> None:
    """Add FedProx's proximal term ``mu/2 * ||w - w_global||^2`` to the module's training loss (Li et al. 2020),
    by wrapping its ``training_step``: the local loss itself, as FedProx defines it, for any task's module."""
    step = module.training_step
    params = list(network_of(module).parameters())

    def with_term(batch: Any, batch_idx: int) -> Any:
        loss = step(batch, batch_idx)
        term = sum(((p - a.to(p.device)) ** 2).sum() for p, a in zip(params, anchor, strict=True))
        return loss + 0.5 * mu * term

    module.training_step = with_term


def network_of(module: Any) -> nn.Module:
    """The network a task's Lightning module trains (``module.net``, the task contract)."""
    net = getattr(module, "net", None)
    if not isinstance(net, nn.Module):
        raise ConfigError("federation", f"{type(module).__name__} has no network (.net) to share")
    return net


class SiteTrainer:
    """One site's local work, independent of how it talks to the server (in process or over gRPC)."""

    def __init__(
        self,
        task: Task,
        dataset: Dataset,
        site: Site,
        folder: Path,
        *,
        index: int = 0,
        calibrates: bool = False,
        progress: ProgressFn | None = None,
    ) -> None:
        self.task, self.dataset, self.site, self.folder = task, dataset, site, folder
        self.index, self.calibrates, self.progress = index, calibrates, progress
        self._prepared: Any = None
        self._plan_text = ""
        self.privacy_histories: list[list[list[float]]] = []
        self.privacy_delta: float | None = None

    def plan(self, config: dict[str, Any]) -> Plan:
        text = str(config.get("plan") or "")
        if not text:
            raise ConfigError("federation", "the server sent no plan")
        plan = parse_plan(json.loads(text), "the server's plan")
        if plan.task != self.dataset.spec.task or plan.class_names != self.dataset.spec.classes:
            raise ConfigError(
                "plan",
                f"the server's plan is for {plan.task} {plan.class_names}, this site's data is "
                f"{self.dataset.spec.task} {self.dataset.spec.classes}",
            )
        if self._prepared is None or text != self._plan_text:  # the site's images are read once
            self._prepared = self.task.prepare(self.dataset, plan, self.site.train + self.site.val, self.progress)
            self._plan_text = text
        return plan

    def fit(self, arrays: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """Train one round from the global ``arrays``; return the new weights, the training size and facts."""
        from medlens.training.fitting import fit_member, read_checkpoint
        from medlens.training.overrides import apply_overrides

        plan = self.plan(config)
        rnd = int(config["round"])
        seed = plan.train.seed + 1000 * rnd + self.index
        local = apply_overrides(
            plan.with_seed(seed),
            [
                f"train.max_epochs={int(config['local_epochs'])}",
                f"train.budget_minutes={config['budget_minutes']}",
                "train.early_stopping_patience=null",
            ],
        )
        member = Member(f"{self.site.name}_round_{rnd}", seed, self.site.train, self.site.val)
        train_loader, val_loader = self.task.loaders(local, self._prepared, member)
        mu = float(config.get("proximal_mu") or 0.0)
        made: list[Any] = []

        def make_module(budget: Any) -> Any:
            module = self.task.module(local, budget)
            made.append(module)
            load_arrays(network_of(module), arrays)
            if mu > 0:
                proximal(module, [p.detach().clone() for p in network_of(module).parameters()], mu)
            return module

        folder = self.folder / f"round_{rnd}"
        summary = fit_member(
            make_module,
            train_loader,
            val_loader,
            local,
            folder,
            name=member.name,
            progress=self.progress,
            share=int(config["rounds"]),
        )
        if made:  # the weights after the round's last step (a checkpoint may be from the end of an earlier epoch)
            net = network_of(made[-1])
        else:  # the round had finished before (its summary was kept): its last checkpoint
            state = read_checkpoint(folder / "checkpoints" / "last.ckpt")["state_dict"]
            net = self.task.build_network(local.without_pretrained())
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        described = self.site.describe(self.dataset.spec.classes)
        facts: dict[str, Any] = {
            **described,
            "label_mix": json.dumps(described["label_mix"]),
            "val_label_mix": json.dumps(described["val_label_mix"]),
            "steps": int(summary["steps"]),
            "train_seconds": float(summary["train_seconds"]),
            f"local_best_{plan.train.monitor}": float(summary.get(f"best_{plan.train.monitor}") or 0.0),
        }
        privacy = plan.train.privacy
        if summary.get("privacy") and privacy is not None:  # the site's epsilon over all its rounds so far
            from medlens.training.privacy import spent_over

            self.privacy_histories.append(summary["privacy"]["accountant_history"])
            self.privacy_delta = float(summary["privacy"]["delta"])
            facts["epsilon_spent"] = round(spent_over(self.privacy_histories, privacy, self.privacy_delta), 4)
            facts["delta"] = self.privacy_delta
            facts["noise_multiplier"] = float(summary["privacy"]["noise_multiplier"])
        write_json(self.folder / "site.json", {**facts, **described, "rounds_trained": rnd})
        return state_arrays(net), len(self.site.train), facts

    def evaluate(self, arrays: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        """Validate the global ``arrays`` on the site's val cases (the task module's own validation figures); on
        the last round the calibrating site adds the operating point chosen on them."""
        import lightning.pytorch as pl

        from medlens.training.fitting import quiet_lightning

        plan = self.plan(config)
        quiet_lightning()
        member = Member(self.site.name, plan.train.seed, self.site.train, self.site.val)
        _, val_loader = self.task.loaders(plan, self._prepared, member)
        module = self.task.module(plan, None)
        load_arrays(network_of(module), arrays)
        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        figures = trainer.validate(module, val_loader, verbose=False)[0]
        metrics: dict[str, Any] = {k: float(v) for k, v in figures.items()}
        metrics["site"] = self.site.name
        if self.calibrates and config.get("final"):
            net = network_of(module).eval()
            calibration = self.task.calibrate(plan, [net], [member], self._prepared)
            metrics["calibration"] = json_text(
                {
                    "plan": calibration.plan.model_dump(mode="json"),
                    "threshold": calibration.threshold,
                    "info": calibration.info,
                    "summary": calibration.summary,
                    "applied": calibration.applied,
                    "site": self.site.name,
                },
                indent=None,
            )
        return float(metrics.get("val_loss", 0.0)), len(self.site.val), metrics


def flower_client(trainer: SiteTrainer) -> Any:
    """The site as a Flower ``Client`` (a ``NumPyClient`` over :class:`SiteTrainer`)."""
    from flwr.client import NumPyClient

    class SiteClient(NumPyClient):  # type: ignore[misc]
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            raise InputError("federation", "sites do not give initial weights; the server starts from the plan")

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return trainer.fit(parameters, config)

        def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return trainer.evaluate(parameters, config)

    return SiteClient().to_client()
