"""The server side of a federation: Flower's FedAvg or FedProx strategy, the rounds, and the bundle at the end.

The strategy objects are Flower's own (``flwr.server.strategy.FedAvg`` / ``FedProx``: weighted averaging of the
sites' weights by their training sizes; FedProx sends ``proximal_mu``, which each site adds to its local loss).
They run either inside Flower's ``Server`` with in-process sites (:func:`simulate`: the sites train one after
another, on this machine) or behind Flower's gRPC server that site processes join (:func:`serve`). Either way the
server holds the plan, the global weights and what the sites say about themselves: never an image.

Budget rule (:data:`BUDGET_RULE`): the total budget is shared equally by every site's every round, so the
federation's training time adds up to the budget, as one centralised run with the same budget.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.errors import ConfigError, InputError, MedlensError
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset
from medlens.federation.site import SiteTrainer, flower_client, state_arrays
from medlens.federation.sites import SiteSplit
from medlens.tasks.base import Calibration, Task, parse_plan
from medlens.training.plan import Plan

log = logging.getLogger(__name__)

STRATEGIES = ("fedavg", "fedprox")
BUDGET_RULE = "budget per site per round = total budget / (rounds x sites)"


@dataclass
class Settings:
    """How the federation runs: strategy, rounds, local epochs, the total budget, and the sites expected."""

    sites: int
    rounds: int = 10
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    local_epochs: int = 1
    budget_minutes: float | None = None
    calibrating_site: str = ""
    wait_minutes: float = 30.0  # the server's wait for every site to be connected, at the start and before a round

    def check(self, plan: Plan) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError("--strategy", f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})")
        if self.rounds < 1 or self.local_epochs < 1 or self.sites < 1:
            raise ConfigError("--rounds", "rounds, local epochs and sites must each be at least 1")
        if self.strategy == "fedprox" and plan.train.privacy is not None:
            raise ConfigError(
                "--strategy",
                "FedProx with train.privacy is not supported: DP-SGD clips per-image "
                "gradients, and the proximal term has none (use fedavg)",
            )

    def round_budget(self, plan: Plan) -> float | None:
        """Minutes of one site's one round (:data:`BUDGET_RULE`); None: epochs only."""
        total = self.budget_minutes if self.budget_minutes is not None else plan.train.budget_minutes
        return None if total is None else float(total) / (self.rounds * self.sites)


@dataclass
class Record:
    """What the server learns: per round, each site's facts and its validation of the global model; the last
    global weights; the operating point chosen at the calibrating site."""

    fit: list[dict[str, Any]] = field(default_factory=list)
    evaluate: list[dict[str, Any]] = field(default_factory=list)
    parameters: Any = None
    calibration: dict[str, Any] | None = None


def make_strategy(
    settings: Settings, plan: Plan, initial: list[np.ndarray], record: Record, progress: ProgressFn | None = None
) -> Any:
    """Flower's FedAvg or FedProx, expecting every site each round, recording into ``record``."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import FedAvg, FedProx

    plan_text = json.dumps(plan.model_dump(mode="json"))
    budget = settings.round_budget(plan)

    def fit_config(server_round: int) -> dict[str, Any]:
        return {
            "plan": plan_text,
            "round": server_round,
            "rounds": settings.rounds,
            "local_epochs": settings.local_epochs,
            "budget_minutes": "null" if budget is None else budget,
        }

    def evaluate_config(server_round: int) -> dict[str, Any]:
        return {"plan": plan_text, "round": server_round, "final": server_round == settings.rounds}

    base = FedProx if settings.strategy == "fedprox" else FedAvg

    class Recording(base):  # type: ignore[misc,valid-type]
        def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
            _raise_failures(server_round, "training", failures)
            record.fit.append(
                {
                    "round": server_round,
                    "sites": sorted((dict(r.metrics) for _, r in results), key=lambda m: str(m.get("site"))),
                }
            )
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            record.parameters = parameters
            if progress is not None:
                progress("federated rounds", server_round, settings.rounds)
            log.info("round %d of %d aggregated from %d site(s)", server_round, settings.rounds, len(results))
            return parameters, metrics

        def aggregate_evaluate(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
            _raise_failures(server_round, "validation", failures)
            sites = []
            for _, res in results:
                metrics = dict(res.metrics)
                if "calibration" in metrics:
                    record.calibration = json.loads(str(metrics.pop("calibration")))
                sites.append(metrics)
            record.evaluate.append({"round": server_round, "sites": sorted(sites, key=lambda m: str(m.get("site")))})
            return super().aggregate_evaluate(server_round, results, failures)

    options: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": settings.sites,
        "min_evaluate_clients": settings.sites,
        "min_available_clients": settings.sites,
        "on_fit_config_fn": fit_config,
        "on_evaluate_config_fn": evaluate_config,
        "accept_failures": False,
        "initial_parameters": ndarrays_to_parameters(initial),
        "fit_metrics_aggregation_fn": _no_aggregate,  # the record keeps each site's figures instead
        "evaluate_metrics_aggregation_fn": _no_aggregate,
    }
    if settings.strategy == "fedprox":
        options["proximal_mu"] = settings.proximal_mu
    return Recording(**options)


def _no_aggregate(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    return {}


def _raise_failures(server_round: int, what: str, failures: list[Any]) -> None:
    for failure in failures:
        if isinstance(failure, MedlensError):  # an in-process site's own error, as it was raised
            raise failure
        if isinstance(failure, BaseException):
            raise InputError(
                "federation", f"a site failed in round {server_round} ({what}): {type(failure).__name__}: {failure}"
            ) from failure
        _, res = failure
        raise InputError("federation", f"a site failed in round {server_round} ({what}): {res.status.message}")


def initial_weights(task: Task, plan: Plan) -> list[np.ndarray]:
    """The global model of round 0, built from the plan alone (seeded; ``model.init`` loaded when set)."""
    torch.manual_seed(plan.train.seed)
    net = task.build_network(plan)
    if plan.model.init:
        from medlens.models.checkpoints import load_init

        load_init(net, plan.model.init, spatial_dims=plan.spatial_dims, channels=plan.data.channels)
    return state_arrays(net)


def quiet_flower() -> None:
    """Flower logs every round at INFO, and warns at every start that its gRPC entry points (``start_server``,
    ``start_client``, still shipped in 1.42) are deprecated in favour of its SuperLink deployment."""
    logging.getLogger("flwr").setLevel(logging.ERROR)


def simulate(
    task: Task,
    dataset: Dataset,
    plan: Plan,
    split: SiteSplit,
    out: Path,
    settings: Settings,
    progress: ProgressFn | None = None,
) -> Record:
    """Run the federation in this process: Flower's ``Server`` and strategy, the sites as in-process clients
    (trained one at a time: ``max_workers=1``), each with its folder under ``out/sites/``."""
    from flwr.server import Server, SimpleClientManager

    quiet_flower()
    record = Record()
    strategy = make_strategy(settings, plan, initial_weights(task, plan), record, progress)
    manager = SimpleClientManager()
    for i, site in enumerate(split.sites):
        trainer = SiteTrainer(
            task,
            dataset,
            site,
            out / "sites" / site.name,
            index=i,
            calibrates=site.name == settings.calibrating_site,
            progress=progress,
        )
        manager.register(InProcessSite(site.name, flower_client(trainer)))
    server = Server(client_manager=manager, strategy=strategy)
    server.set_max_workers(1)
    server.fit(num_rounds=settings.rounds, timeout=None)
    return record


def serve(address: str, task: Task, plan: Plan, settings: Settings, progress: ProgressFn | None = None) -> Record:
    """Run the federation as Flower's gRPC server on ``address`` (host:port) until every round is done; the sites
    join with ``medlens federated DATASET --connect ADDRESS`` (:func:`medlens.workflows.federated.join`)."""
    import warnings

    from flwr.server import ServerConfig
    from flwr.server.server import init_defaults, run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    quiet_flower()
    record = Record()
    strategy = make_strategy(settings, plan, initial_weights(task, plan), record, progress)
    manager = waiting_manager(address, settings.wait_minutes * 60)
    # what flwr's start_server does, with the gRPC server stopped also when a round fails: start_server leaves it
    # running, and its threads (a connected site's stream) keep the process alive after the error
    server, config = init_defaults(
        server=None, config=ServerConfig(num_rounds=settings.rounds), strategy=strategy, client_manager=manager
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grpc_server = start_grpc_server(client_manager=server.client_manager(), server_address=address)
        try:
            run_fl(server=server, config=config)
        finally:
            grpc_server.stop(grace=1)
    return record


def waiting_manager(address: str, seconds: float) -> Any:
    """Flower's client manager, waiting ``seconds`` (not Flower's day) for every site before a round, then raising
    :class:`~medlens.core.errors.MedlensError` naming how many joined: a site that never comes or has gone stops
    the federation with a message instead of a server that waits on."""
    from flwr.server.client_manager import SimpleClientManager

    class Waiting(SimpleClientManager):  # type: ignore[misc]
        def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
            if not super().wait_for(num_clients, timeout=min(timeout, seconds)):  # type: ignore[arg-type]
                raise MedlensError(
                    f"{address}: {len(self.clients)} of {num_clients} site(s) connected after waiting "
                    f"{seconds:g} s (--wait); start each site with --connect {address} --site NAME"
                )
            return True

    return Waiting()


class InProcessSite:
    """A Flower ``ClientProxy`` that hands the server's instructions to a site's client in this process."""

    def __new__(cls, cid: str, client: Any) -> Any:
        from flwr.common import DisconnectRes
        from flwr.server.client_proxy import ClientProxy

        class Proxy(ClientProxy):  # type: ignore[misc]
            def get_properties(self, ins: Any, timeout: Any, group_id: Any) -> Any:
                return client.get_properties(ins)

            def get_parameters(self, ins: Any, timeout: Any, group_id: Any) -> Any:
                return client.get_parameters(ins)

            def fit(self, ins: Any, timeout: Any, group_id: Any) -> Any:
                return client.fit(ins)

            def evaluate(self, ins: Any, timeout: Any, group_id: Any) -> Any:
                return client.evaluate(ins)

            def reconnect(self, ins: Any, timeout: Any, group_id: Any) -> Any:
                return DisconnectRes(reason="")

        return Proxy(cid)


def final_weights(task: Task, plan: Plan, record: Record) -> dict[str, torch.Tensor]:
    """The last global weights as the network's state dict."""
    from flwr.common import parameters_to_ndarrays

    from medlens.federation.site import load_arrays

    if record.parameters is None:
        raise InputError("federation", "no round finished: there are no global weights to write")
    net = task.build_network(plan.without_pretrained())
    load_arrays(net, parameters_to_ndarrays(record.parameters))
    return net.state_dict()


def calibration_of(record: Record, plan: Plan) -> Calibration:
    """The operating point the calibrating site chose (the plan's own defaults when none was sent)."""
    chosen = record.calibration
    if not chosen:
        log.warning("no site calibrated the model; the bundle keeps the task's default operating point")
        return Calibration(plan)
    return Calibration(
        parse_plan(chosen["plan"], "the calibrating site's plan"),
        threshold=chosen.get("threshold"),
        info={**(chosen.get("info") or {}), "calibrated_at": chosen.get("site")},
        summary=chosen.get("summary") or {},
        applied=chosen.get("applied") or {},
    )
