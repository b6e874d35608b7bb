"""``medlens federated``: train across sites with Flower (simulated here, or a server and its sites)."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.model_commands import OVERWRITE, parse_duration


def federated_cmd(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder (medlens import); its manifest gives or is split into the sites."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (a site's own folder with --connect)."),
    sites: int = typer.Option(3, "--sites", min=1, help="Number of sites."),
    split_by: str | None = typer.Option(
        None, "--split-by", help="Manifest column naming each case's site (one site per value)."
    ),
    skew: str = typer.Option(
        "iid",
        "--skew",
        help="Without --split-by: iid (patients dealt out equally) or label (each label's patients "
        "shared by a Dirichlet draw, see --alpha).",
    ),
    alpha: float = typer.Option(
        0.5, "--alpha", min=0.01, help="Dirichlet concentration of --skew label (small: strong skew)."
    ),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the tool's split into sites."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Federated rounds."),
    strategy: str = typer.Option("fedavg", "--strategy", help="fedavg or fedprox (Flower's strategies)."),
    mu: float = typer.Option(0.01, "--mu", min=0.0, help="FedProx's proximal weight mu."),
    local_epochs: int = typer.Option(1, "--local-epochs", min=1, help="Epochs each site trains per round."),
    budget: str | None = typer.Option(
        None,
        "--budget",
        help="Total training time (e.g. 10m), shared equally by every site's every round: "
        "budget / (rounds x sites) each. Default: the plan's train.budget_minutes.",
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a plan field, e.g. --set train.privacy.epsilon=8."),
    serve: str | None = typer.Option(
        None,
        "--serve",
        help="Run as Flower's gRPC server on HOST:PORT and wait for the sites to --connect "
        "(default: simulate every site in this process).",
    ),
    wait: str = typer.Option(
        "30m",
        "--wait",
        help="With --serve: how long the server waits for every site to be connected (at the start and before each "
        "round) before it stops with an error naming how many came, e.g. 90s, 2h.",
    ),
    connect: str | None = typer.Option(
        None, "--connect", help="Join the server at HOST:PORT as a site; the server sends the plan."
    ),
    site: str | None = typer.Option(
        None,
        "--site",
        help="With --connect: this site's name in the split of DATASET (site_0, ... or a --split-by "
        "value); default: all of DATASET is this site's.",
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Train the dataset's plan across sites with Flower (FedAvg or FedProx): each site trains the task's model on
    its own cases each round, only weights go to the server, and the result is an ordinary run with a bundle
    (evaluate, predict, export) whose model card records the sites, rounds and strategy.

    Simulation (default) runs every site in this process. For separate processes or machines, start the server
    with --serve HOST:PORT, then each site with --connect HOST:PORT --site NAME (same --sites/--split-by/--skew).
    With --set train.privacy.epsilon=E each site trains with DP-SGD and its spent epsilon is recorded.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.workflows.federated import federated, join

    minutes = parse_duration(budget) if budget is not None else None
    if serve and connect:
        raise typer.BadParameter("give --serve (the server) or --connect (a site), not both")
    with progress_bars() as progress:
        if connect:
            record = join(
                dataset,
                out,
                connect,
                site=site,
                sites=sites,
                split_by=split_by,
                skew=skew,
                alpha=alpha,
                seed=split_seed,
                overwrite=overwrite,
                progress=progress,
            )
            Console().print(f"site {record['site']} trained {record['rounds_trained']} round(s); its folder: {out}")
            return
        summary = federated(
            dataset,
            out,
            sites=sites,
            split_by=split_by,
            skew=skew,
            alpha=alpha,
            split_seed=split_seed,
            rounds=rounds,
            strategy=strategy,
            proximal_mu=mu,
            local_epochs=local_epochs,
            budget_minutes=minutes,
            overrides=set_,
            serve=serve,
            wait_minutes=parse_duration(wait, "--wait"),
            overwrite=overwrite,
            progress=progress,
        )
    fed = summary["federated"]
    value = summary["val_monitor_mean"]
    Console().print(
        f"[bold]{fed['strategy']}[/] over {len(fed['sites'])} sites, {fed['rounds']} rounds: validation "
        f"{summary['monitor']} {'n/a' if value is None else f'{value:.3f}'} (global model, at the sites)"
        + (f", ε spent {summary['privacy']['epsilon_spent']:.3g}" if summary.get("privacy") else "")
        + f"\nbundle: {out / 'bundle'}"
    )


def register(app: typer.Typer) -> None:
    app.command("federated")(federated_cmd)
