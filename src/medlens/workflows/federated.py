"""Federated training with Flower: ``medlens.federated(...)`` (simulation, or a server that sites join) and
``medlens.workflows.federated.join(...)`` (a site).

Run folder (the server's)::

    RUN_DIR/
      .medlens, run.yaml, plan.yaml
      federation.json          # sites (sizes, label mix), split rule, strategy, rounds, budget rule, per-round facts
      sites/<site>/round_<r>/  # simulation only: each site's local fits (checkpoints, logs); a real site keeps its own
      bundle/                  # the last global model, an ordinary bundle (evaluate, predict, export)
      train_summary.json
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import check_output_folder, write_json, write_marker, write_text_atomic
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset, load_dataset
from medlens.tasks.base import Task, get_task
from medlens.training.overrides import save_plan
from medlens.training.plan import Plan
from medlens.workflows.planning import resolve_plan

log = logging.getLogger(__name__)


def federated(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    sites: int = 3,
    split_by: str | None = None,
    skew: str = "iid",
    alpha: float = 0.5,
    split_seed: int = 0,
    rounds: int = 10,
    strategy: str = "fedavg",
    proximal_mu: float = 0.01,
    local_epochs: int = 1,
    budget_minutes: float | None = None,
    overrides: list[str] | None = None,
    serve: str | None = None,
    wait_minutes: float = 30.0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train the dataset's plan across sites with Flower; write an ordinary run folder with a bundle.

    Args:
        dataset_dir: the dataset; its manifest gives the sites (``split_by``) or is split by the tool.
        out: the run folder to create.
        sites: number of sites.
        split_by: a manifest column naming each case's site.
        skew: ``iid`` or ``label`` when the tool splits (see :mod:`medlens.federation.sites`).
        alpha: Dirichlet concentration of ``label`` skew.
        split_seed: the seed of the tool's split (a site joining a server uses the same to find its cases).
        rounds: federated rounds.
        strategy: ``fedavg`` or ``fedprox`` (Flower's strategies).
        proximal_mu: FedProx's proximal weight.
        local_epochs: epochs each site trains per round (the round's budget may stop it earlier).
        budget_minutes: the total training budget, shared by every site's every round (see
            :data:`medlens.federation.server.BUDGET_RULE`); default the plan's ``train.budget_minutes``.
        overrides: ``key=value`` plan overrides (``train.privacy.epsilon=8``: DP-SGD at every site).
        serve: run as Flower's gRPC server on this ``host:port`` and wait for the sites to join (:func:`join`);
            None: simulate every site in this process.
        wait_minutes: with ``serve``: how long the server waits for every site to be connected, at the start and
            before each round, before it stops with an error naming how many came.
        overwrite: replace an existing run folder (only one medlens made).
        progress: called as rounds finish and batches are trained.

    Example:
        >>> from medlens.workflows.federated import federated
        >>> federated("datasets/pneumonia", "runs/fed", sites=3, skew="label", rounds=10)  # doctest: +SKIP
    """
    from medlens.federation.server import BUDGET_RULE, Settings, simulate
    from medlens.federation.sites import split_sites

    out = Path(out)
    dataset = load_dataset(dataset_dir)
    task = get_task(dataset.spec.task)
    check_output_folder(out, overwrite=overwrite, inputs=[("dataset", dataset.root)])
    plan = resolve_plan(dataset, list(overrides or []))
    settings = Settings(sites, rounds, strategy, proximal_mu, local_epochs, budget_minutes, wait_minutes=wait_minutes)
    settings.check(plan)
    from medlens.training.privacy import check_task

    check_task(task, plan)
    split = None
    if serve is None:
        split = split_sites(dataset, sites, by=split_by, skew=skew, alpha=alpha, seed=split_seed)
        settings.calibrating_site = split.sites[0].name
    if out.exists() and any(out.iterdir()):  # checked above: marked, and the user asked to overwrite
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "run")
    save_plan(plan, out / "plan.yaml")
    run_info = {
        "dataset": str(dataset.root.resolve()),
        "task": dataset.spec.task,
        "federated": {
            "sites": sites,
            "split_by": split_by,
            "skew": None if split_by else skew,
            "alpha": alpha,
            "split_seed": split_seed,
            "rounds": rounds,
            "strategy": strategy,
            "local_epochs": local_epochs,
            "budget_minutes": budget_minutes,
            "serve": serve,
        },
        "overrides": list(overrides or []),
    }
    write_text_atomic(out / "run.yaml", yaml.safe_dump(run_info, sort_keys=False))
    try:
        if split is not None:
            record = simulate(task, dataset, plan, split, out, settings, progress)
        else:
            from medlens.federation.server import serve as run_server

            record = run_server(serve, task, plan, settings, progress)  # type: ignore[arg-type]
    except BaseException:
        if not (out / "sites").is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    rule = split.rule if split is not None else "each site joined over gRPC with its own cases"
    facts = {
        "mode": "simulation (Flower Server, in-process sites)" if split is not None else f"gRPC server on {serve}",
        "strategy": strategy,
        "proximal_mu": proximal_mu if strategy == "fedprox" else None,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "budget_minutes": settings.budget_minutes if budget_minutes is not None else plan.train.budget_minutes,
        "budget_per_site_round_minutes": settings.round_budget(plan),
        "budget_rule": BUDGET_RULE,
        "split_rule": rule,
    }
    return finish(task, dataset, plan, out, record, facts)


def join(
    dataset_dir: str | Path,
    out: str | Path,
    address: str,
    *,
    site: str | None = None,
    sites: int = 3,
    split_by: str | None = None,
    skew: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    calibrates: bool | None = None,
    wait_seconds: float = 120.0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Join a federation's server at ``address`` as one site, and train each round on this site's cases; return
    the site's record (also ``out/site.json``). The server sends the plan.

    Args:
        dataset_dir: the site's dataset.
        out: the site's own folder (its local fits); nothing in it leaves the site.
        address: the server's ``host:port``.
        site: the site's name among the tool's split of ``dataset_dir`` (``site_0``, ... or a ``split_by`` value);
            None: every train and val case of ``dataset_dir`` is this site's (a hospital's own dataset).
        sites, split_by, skew, alpha, seed: the split that ``site`` names (as given to the server's simulation).
        calibrates: choose the operating point on this site's validation cases at the end (default: for
            ``site_0``, the first value of ``split_by``, or a site holding its whole dataset).
        wait_seconds: how long to keep trying to reach a server that is not listening yet.
        overwrite: replace an existing site folder (only one medlens made).
        progress: called as batches are trained.
    """
    from flwr.client import start_client

    from medlens.federation.server import quiet_flower
    from medlens.federation.site import SiteTrainer, flower_client
    from medlens.federation.sites import Site, split_sites

    out = Path(out)
    dataset = load_dataset(dataset_dir)
    task = get_task(dataset.spec.task)
    check_output_folder(out, overwrite=overwrite, inputs=[("dataset", dataset.root)])
    if site is None:
        own = Site(dataset.spec.name, dataset.split("train"), dataset.split("val"))
        index, first = 0, True
    else:
        split = split_sites(dataset, sites, by=split_by, skew=skew, alpha=alpha, seed=seed)
        own = split.get(site)
        index = [s.name for s in split.sites].index(site)
        first = index == 0
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "federated-site")
    trainer = SiteTrainer(
        task, dataset, own, out, index=index, calibrates=first if calibrates is None else calibrates, progress=progress
    )
    quiet_flower()
    wait_for_server(address, wait_seconds)
    import warnings

    import grpc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            start_client(server_address=address, client=flower_client(trainer), insecure=True)
        except grpc.RpcError as exc:
            raise InputError(address, f"the federation's server went away ({exc.code().name})") from None
    record = {**own.describe(), "address": address, "rounds_trained": len(list(out.glob("round_*")))}
    write_json(out / "site.json", record)
    return record


def wait_for_server(address: str, seconds: float) -> None:
    """Wait until something listens on ``address`` (host:port). Flower's legacy gRPC client does not retry its
    first connection, so a site started before its server would fail at once.

    Raises:
        InputError: naming the address when nothing listens there within ``seconds``.
    """
    import socket
    import time

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("--connect", f"expected HOST:PORT, got {address!r}")
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise InputError(address, f"no federation server listens there (waited {seconds:g} s)") from None
            time.sleep(0.5)


def finish(task: Task, dataset: Dataset, plan: Plan, out: Path, record: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """Write the bundle from the last global weights, ``federation.json`` and ``train_summary.json``."""
    from medlens.federation.server import calibration_of, final_weights
    from medlens.models.bundle import save_bundle
    from medlens.training.card import card_facts

    state = final_weights(task, plan, record)
    calibration = calibration_of(record, plan)
    last_fit = record.fit[-1]["sites"] if record.fit else []
    sites = [
        {
            "site": s.get("site"),
            "n_train": s.get("n_train"),
            "n_val": s.get("n_val"),
            "label_mix": _mix(s.get("label_mix")),
            "val_label_mix": _mix(s.get("val_label_mix")),
            **({"epsilon_spent": s["epsilon_spent"], "delta": s.get("delta")} if "epsilon_spent" in s else {}),
        }
        for s in last_fit
    ]
    monitor = plan.train.monitor
    final_val = record.evaluate[-1]["sites"] if record.evaluate else []
    by_site = {s["site"]: s for s in sites}
    weighted = [
        (float(s[monitor]), int(by_site[s["site"]]["n_val"] or 0))
        for s in final_val
        if monitor in s and s.get("site") in by_site and len(by_site[s["site"]]["val_label_mix"]) > 1
    ]
    total_val = sum(n for _, n in weighted)
    val_mean = sum(v * n for v, n in weighted) / total_val if total_val else None
    federation = {
        **facts,
        "sites": sites,
        "calibrated_at": (record.calibration or {}).get("site"),
        "server_saw": "the plan, weights, each site's sizes, label mix, figures and chosen operating point; no image",
        "val_per_round": [
            {"round": r["round"], **{s["site"]: _round(s.get(monitor)) for s in r["sites"]}} for r in record.evaluate
        ],
        "val_mean_rule": "the last global model's validation figure at each site, weighted by its validation cases; "
        "sites whose validation cases hold a single label are left out",
        "fit_per_round": record.fit,
    }
    privacy = None
    if plan.train.privacy is not None and sites and all("epsilon_spent" in s for s in sites):
        privacy = {
            "per_site": {s["site"]: s["epsilon_spent"] for s in sites},
            "epsilon_spent": max(float(s["epsilon_spent"]) for s in sites),
            "epsilon_target": plan.train.privacy.epsilon,
            "delta": sites[0].get("delta"),
            "max_grad_norm": plan.train.privacy.max_grad_norm,
            "accountant": plan.train.privacy.accountant,
            "method": "DP-SGD (Opacus) at every site, over all its rounds; the largest site's epsilon is the figure",
        }
        federation["privacy"] = privacy
    write_json(out / "federation.json", federation)
    summary: dict[str, Any] = {
        "dataset": str(dataset.root.resolve()),
        "task": plan.task,
        "members": ["federated"],
        "kind": "federated",
        "monitor": monitor,
        "val_monitor_mean": val_mean,
        "val_monitor_sd": 0.0,
        "federated": {k: v for k, v in federation.items() if k != "fit_per_round"},
        **calibration.summary,
    }
    if privacy:
        summary["privacy"] = privacy
    lines = task.card_lines(calibration.plan, calibration) + card_lines(federation)
    info = {
        "dataset": dataset.spec.name,
        "modality": dataset.spec.modality,
        "channels": dataset.spec.channels,
        "n_train": sum(int(s["n_train"] or 0) for s in sites),
        "n_val": sum(int(s["n_val"] or 0) for s in sites),
        "members": "federated model",
        "federated": {
            k: federation[k]
            for k in (
                "strategy",
                "rounds",
                "local_epochs",
                "budget_rule",
                "split_rule",
                "sites",
                "calibrated_at",
                "mode",
            )
        },
        **({"privacy": privacy} if privacy else {}),
        **calibration.info,
    }
    info["card"] = card_facts(dataset, calibration.plan, summary, lines, [])
    explanation = None
    if task.explain_methods:
        why = "the task's first method: not scored on validation (federated: the server holds no image)"
        explanation = {"default": task.explain_methods[0], "why": why, "scores": {}}
    save_bundle(
        out / "bundle",
        calibration.plan,
        [state],
        task=task,
        threshold=calibration.threshold,
        info=info,
        calibration=calibration.applied,
        explanation=explanation,
    )
    write_json(out / "train_summary.json", summary)
    return summary


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _mix(value: Any) -> dict[str, int]:
    import json

    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return {str(k): int(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return {}


def card_lines(federation: dict[str, Any]) -> list[str]:
    """The model card's lines about the federation: strategy, rounds, the sites and their label mix, privacy."""
    sites = "; ".join(
        f"{s['site']} {s['n_train']} train / {s['n_val']} val (labels "
        + ", ".join(f"{k}: {v}" for k, v in s["label_mix"].items())
        + ")"
        for s in federation["sites"]
    )
    lines = [
        f"Federated training with Flower ({federation['strategy']}"
        + (f", proximal mu {federation['proximal_mu']:g}" if federation.get("proximal_mu") else "")
        + f"): {len(federation['sites'])} sites, {federation['rounds']} rounds of {federation['local_epochs']} local "
        f"epoch(s); {federation['budget_rule']}; the server saw weights, never an image",
        f"Sites ({federation['split_rule']}): {sites}",
    ]
    if federation.get("calibrated_at"):
        lines.append(f"Operating point chosen at {federation['calibrated_at']} on its own validation cases")
    privacy = federation.get("privacy")
    if privacy:
        per = ", ".join(f"{k}: {v:.3g}" for k, v in privacy["per_site"].items())
        lines.append(
            f"Each site trained with differential privacy (DP-SGD): ε spent per site {per} of "
            f"{privacy['epsilon_target']:g}, δ = {privacy['delta']:.2g}"
        )
    return lines
