"""Differential privacy for every task that trains through :func:`medlens.training.fitting.fit_member`: DP-SGD with
Opacus (per-image gradient clipping, Gaussian noise calibrated to the plan's ``train.privacy`` epsilon and delta,
Poisson sampling of batches so the accounting holds).

Opacus is used, not hand-written DP-SGD: its per-sample gradients, its optimizer wrapper and its accountants are
the ones the field checks. The pieces are plain functions that take a network, an optimizer and a loader
(:func:`poisson_loader`, :func:`make_private`), so another training loop (a federated site's) can use them;
:class:`PrivateFitting` is the Lightning callback that applies them to a task's module at fit start.

What stays the same: the network is not wrapped (Opacus's ``wrap_model=False`` attaches its hooks to the
network itself), so checkpoints, ``best_weights`` and the bundle keep their key names; the learning-rate schedule
keeps driving the optimizer (Opacus's ``DPOptimizer`` shares the original's ``param_groups``). Networks are made
compatible when they are BUILT (:func:`compatible_network`, BatchNorm -> GroupNorm), so a bundle rebuilt from its
plan has the same layers.

The run's members (seeds, folds) all see the training images: the noise of each member is calibrated for the
steps of every member together, and the spent epsilon of the bundle is counted over all of them (one accountant
fed every member's steps), so the whole bundle keeps to the requested budget.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from medlens.core.errors import ConfigError
from medlens.training.plan import Plan, PrivacyPlan

if TYPE_CHECKING:
    from medlens.tasks.base import Task

log = logging.getLogger(__name__)

DELTA_RULE = "min(1e-5, 1/(10 n_train))"


def default_delta(n_train: int) -> float:
    """The delta used when the plan gives none: :data:`DELTA_RULE` (well below 1/n, the usual requirement)."""
    return min(1e-5, 1.0 / (10 * max(1, n_train)))


def compatible_network(net: nn.Module, name: str) -> nn.Module:
    """``net`` with the layers DP-SGD cannot use replaced (Opacus ``ModuleValidator.fix``: BatchNorm -> GroupNorm)
    and in-place activations made out-of-place, then checked by ``ModuleValidator.validate``.

    Raises:
        ConfigError: on ``model.name``, naming the model and Opacus's first objection.
    """
    from opacus.validators import ModuleValidator

    logging.getLogger("opacus").setLevel(logging.WARNING)  # it logs every layer it replaces at INFO
    try:
        fixed = ModuleValidator.fix(net)
        for module in fixed.modules():  # Opacus's backward hooks forbid in-place changes of a layer's output
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        errors = ModuleValidator.validate(fixed, strict=False)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        raise ConfigError("model.name", f"{name} cannot be made private by Opacus: {exc}") from None
    if errors:
        first = str(errors[0]).replace("\n", " ")
        raise ConfigError("model.name", f"{name} cannot be trained with differential privacy: {first}")
    for module in fixed.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            module._call_impl = functools.partial(_call_and_copy, module)  # type: ignore[method-assign]
    return fixed


def _call_and_copy(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """A layer's call that returns a copy of its output while gradients flow.

    Opacus's per-sample hooks (``register_full_backward_hook``) return a layer's output as a view that autograd
    forbids changing in place, and networks do change it (a residual block's ``out += residual``). The copy lets
    them, without touching the network's code, its layer types (Opacus's grad samplers go by type) or its
    state_dict keys. Bound per layer with ``functools.partial``, so a copied or pickled network keeps it.
    """
    out = type(self)._call_impl(self, *args, **kwargs)
    return out.clone() if isinstance(out, torch.Tensor) and out.requires_grad else out


def check_task(task: Task, plan: Plan) -> None:
    """Refuse, before any data is read, a private plan that the task or its network cannot train.

    Raises:
        ConfigError: on ``train.privacy`` when the task refuses privacy (its ``privacy_refused`` says why), or on
            ``model.name`` when Opacus cannot make the network private.
    """
    if plan.train.privacy is None:
        return
    if task.privacy_refused:
        raise ConfigError("train.privacy", f"the {task.name} task cannot train privately: {task.privacy_refused}")
    task.build_network(plan.without_pretrained())  # the task's build applies compatible_network, which checks


def poisson_loader(loader: DataLoader[Any], seed: int = 0) -> DataLoader[Any]:
    """A loader over ``loader``'s dataset that draws each batch by Poisson sampling (every image independently,
    with chance 1/len(loader)): the sampling DP-SGD's accounting assumes. Same number of batches per epoch."""
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import default_collate

    # a loader that batches in its dataset (batch_size None) converts rather than collates: collate items here
    collate = loader.collate_fn if loader.batch_size is not None else default_collate
    return DPDataLoader(
        loader.dataset,
        sample_rate=1.0 / len(loader),
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        num_workers=loader.num_workers,
    )


@dataclass
class Private:
    """What :func:`make_private` returns: the DP optimizer to step, the Poisson loader to draw from, and the
    accountant's engine, with the numbers the privacy statement needs."""

    engine: Any
    optimizer: Any
    loader: DataLoader[Any]
    hooks: Any
    noise_multiplier: float
    delta: float
    plan: PrivacyPlan
    sample_rate: float

    def spent(self) -> float:
        """The epsilon spent so far (at :attr:`delta`) by the steps taken."""
        return float(self.engine.get_epsilon(self.delta)) if len(self.engine.accountant) else 0.0

    def history(self) -> list[list[float]]:
        """The accountant's state as plain values: ``[noise_multiplier, sample_rate, steps]`` rows."""
        return [[float(s), float(q), int(n)] for s, q, n in self.engine.accountant.history]

    def facts(self) -> dict[str, Any]:
        return {
            "epsilon_spent": round(self.spent(), 4),
            "epsilon_target": self.plan.epsilon,
            "delta": self.delta,
            "delta_rule": None if self.plan.delta is not None else DELTA_RULE,
            "max_grad_norm": self.plan.max_grad_norm,
            "noise_multiplier": round(self.noise_multiplier, 5),
            "sample_rate": self.sample_rate,
            "accountant": self.plan.accountant,
            "steps": sum(int(n) for _, _, n in self.engine.accountant.history),
            "accountant_history": self.history(),
        }


def make_private(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    privacy: PrivacyPlan,
    *,
    epochs: int,
    share: int = 1,
    seed: int = 0,
) -> Private:
    """Make one training loop private: per-image gradients on ``net`` (hooks, not a wrapper), ``optimizer`` wrapped
    to clip and add noise, ``loader`` drawn by Poisson sampling (unless it already is).

    Args:
        net: the network being trained (compatible: see :func:`compatible_network`); it is not wrapped.
        optimizer: its optimizer; the returned ``Private.optimizer`` is the one to step.
        loader: the training loader (its dataset's length is n_train).
        privacy: the plan's ``train.privacy``.
        epochs: the planned epochs; the noise is calibrated so that ``share`` loops of that many epochs spend at
            most ``privacy.epsilon`` together.
        share: how many such loops (members, rounds of a site) the budget is shared by.
        seed: the Poisson sampler's seed.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import DPDataLoader

    drawn = loader if isinstance(loader, DPDataLoader) else poisson_loader(loader, seed)
    n_train = len(drawn.dataset)  # type: ignore[arg-type]
    delta = privacy.delta if privacy.delta is not None else default_delta(n_train)
    sample_rate = 1.0 / len(drawn)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is valid, only looser
        warnings.simplefilter("ignore")
        sigma = get_noise_multiplier(
            target_epsilon=privacy.epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=max(1, epochs * len(drawn) * share),
            accountant=privacy.accountant,
        )
    with warnings.catch_warnings():  # "secure RNG turned off": a production setting (secure_mode), said in the docs
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=privacy.accountant)
    hooks, dp_optimizer, dp_loader = engine.make_private(
        module=net,
        optimizer=optimizer,
        data_loader=drawn,
        noise_multiplier=sigma,
        max_grad_norm=privacy.max_grad_norm,
        poisson_sampling=False,  # drawn is Poisson already
        wrap_model=False,  # hooks on the network itself: its state_dict keys stay as they are
    )
    warnings.filterwarnings(
        "ignore", message=".*Full backward hook is firing when gradients are computed with respect.*"
    )
    log.info("DP-SGD: noise multiplier %.3f for epsilon %s, delta %.2g over %d x %d steps", sigma, privacy.epsilon,
             delta, share, epochs * len(drawn))  # fmt: skip
    return Private(engine, dp_optimizer, dp_loader, hooks, float(sigma), delta, privacy, sample_rate)


def spent_over(histories: list[list[list[float]]], privacy: PrivacyPlan, delta: float) -> float:
    """The epsilon spent by several loops on the same data (the members of a run): one accountant fed the steps of
    all of them, so the figure is their composition."""
    from opacus.accountants import create_accountant

    accountant = create_accountant(privacy.accountant)
    accountant.history = [(float(s), float(q), int(n)) for history in histories for s, q, n in history]
    return float(accountant.get_epsilon(delta)) if accountant.history else 0.0


class PrivateFitting(pl.Callback):
    """Makes a Lightning fit private at its start (the module's ``net`` and the trainer's optimizer; the train
    loader given to ``trainer.fit`` must be :attr:`loader`). The accountant is saved with the checkpoint as plain
    values and restored on resume, so a resumed run keeps counting from where it stopped."""

    def __init__(self, privacy: PrivacyPlan, loader: DataLoader[Any], *, epochs: int, share: int, seed: int) -> None:
        self.privacy, self.epochs, self.share, self.seed = privacy, epochs, share, seed
        self.loader = poisson_loader(loader, seed)
        self.private: Private | None = None
        self._restored: list[list[float]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.strategy.optimizers
        if len(optimizers) != 1:
            raise ConfigError("train.privacy", f"DP-SGD needs one optimizer; this module has {len(optimizers)}")
        net = getattr(pl_module, "net", None)
        if not isinstance(net, nn.Module):
            raise ConfigError("train.privacy", f"{type(pl_module).__name__} has no network (.net) to make private")
        self.private = make_private(
            net, optimizers[0], self.loader, self.privacy, epochs=self.epochs, share=self.share, seed=self.seed
        )
        if self._restored:
            self.private.engine.accountant.history = [(float(s), float(q), int(n)) for s, q, n in self._restored]
        trainer.strategy.optimizers = [self.private.optimizer]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.private is not None:
            self.private.hooks.cleanup()

    def state_dict(self) -> dict[str, Any]:
        return {"accountant_history": self.private.history() if self.private else list(self._restored)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = [list(row) for row in state_dict.get("accountant_history") or []]

    def facts(self) -> dict[str, Any]:
        """The member's privacy record (for its summary)."""
        if self.private is None:
            return {}
        return self.private.facts()


def run_privacy(summaries: list[dict[str, Any]], plan: Plan) -> dict[str, Any] | None:
    """The run's privacy record, counted over every member (see :func:`spent_over`); None without privacy."""
    privacy = plan.train.privacy
    records = [s["privacy"] for s in summaries if s.get("privacy")]
    if privacy is None or not records:
        return None
    delta = float(records[0]["delta"])
    spent = spent_over([r["accountant_history"] for r in records], privacy, delta)
    return {
        "epsilon_spent": round(spent, 4),
        "epsilon_target": privacy.epsilon,
        "delta": delta,
        "delta_rule": records[0].get("delta_rule"),
        "max_grad_norm": privacy.max_grad_norm,
        "noise_multiplier": records[0]["noise_multiplier"],
        "accountant": privacy.accountant,
        "members": len(records),
        "method": "DP-SGD (Opacus): per-image clipping, Gaussian noise, Poisson sampling",
        "not_covered": NOT_COVERED,
    }


# what the guarantee leaves out: it bounds what the weights' updates reveal of each training image, nothing else
NOT_COVERED = (
    "the validation images (checkpoint choice, temperature calibration, threshold) and the plan's intensity "
    "statistics and sizes, read from the dataset before training, are used without privacy"
)


def card_line(record: dict[str, Any]) -> str:
    """The model card's line for a private run."""
    return (
        f"Trained with differential privacy: ε = {record['epsilon_spent']:.3g} spent of {record['epsilon_target']:g}, "
        f"δ = {record['delta']:.2g}, clipping {record['max_grad_norm']:g} (DP-SGD, noise multiplier "
        f"{record['noise_multiplier']:.3g}, {record['accountant'].upper()} accountant, over {record['members']} "
        f"member(s)). Only the training images are protected: {record.get('not_covered', NOT_COVERED)}."
    )
