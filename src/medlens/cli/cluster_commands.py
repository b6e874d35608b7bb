"""``medlens tune``: a Ray Tune search over plan keys; and the option kind behind ``predict --ray [ADDRESS]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperCommand

from medlens.cli.model_commands import OVERWRITE, parse_duration


class OptionalValueCommand(TyperCommand):
    """A command whose ``--ray`` option may be given without a value (then ``local``), as ``--ray [ADDRESS]``.

    Typer has no option with an optional value; click has (``flag_value`` with a value expected), so the option is
    marked so on the click side before parsing.
    """

    optional: dict[str, str] = {"--ray": "local"}  # noqa: RUF012 (read-only)

    def make_parser(self, ctx: click.Context) -> Any:
        for param in self.params:
            if isinstance(param, click.Option):
                for name, value in self.optional.items():
                    if name in param.opts:
                        param._flag_needs_value = True
                        param.flag_value = value
        return super().make_parser(ctx)


def tune_cmd(
    dataset_dir: Path = typer.Argument(..., help="A dataset folder; its plan is where the search starts."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create: trials/, best/ (a run), trials.csv/.png."),
    trials: int = typer.Option(16, "--trials", min=1, help="Trials to draw from the search space."),
    budget: str | None = typer.Option(
        None,
        "--budget",
        help="Total time of the search, e.g. 60m: each trial gets budget x concurrent trials / trials, and the search "
        "ends at the budget. Default: every trial trains as its plan says.",
    ),
    space: list[str] = typer.Option(
        [],
        "--space",
        help="A search dimension KEY=KIND(ARGS) replacing or adding to the default space; KIND is loguniform, "
        "uniform, randint (two numbers) or choice (values), e.g. --space 'optim.lr=loguniform(1e-4, 1e-2)'.",
    ),
    no_defaults: bool = typer.Option(
        False, "--no-default-space", help="Search only the --space dimensions (not the default space)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="A plan override every trial gets, e.g. --set train.max_epochs=8."
    ),
    ray: str | None = typer.Option(
        None, "--ray", metavar="ADDRESS", help="A running Ray cluster HOST:PORT (default: a local Ray on all cores)."
    ),
    grace: int = typer.Option(1, "--grace-epochs", min=1, help="ASHA: epochs every trial trains before any stop."),
    reduction: int = typer.Option(3, "--reduction-factor", min=2, help="ASHA: keep the best 1/N at each rung."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random draws."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Search plan keys (learning rate, width, augmentation strength, loss weights) with Ray Tune and ASHA.

    Each trial is an ordinary training run with --set overrides drawn from the search space, stopped early by ASHA
    when it trails; the best finished trial's run is copied to OUT/best (use it as any run: evaluate, predict).
    The default space comes from the dataset's plan; it is printed and written to OUT/search_space.yaml.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.cluster.search_space import resolve_space
    from medlens.data.dataset import load_dataset
    from medlens.workflows.planning import resolve_plan
    from medlens.workflows.tuning import space_yaml, tune

    minutes = parse_duration(budget) if budget else None
    console = Console()
    plan = resolve_plan(load_dataset(dataset_dir), list(set_))
    console.print("search space:\n" + space_yaml(resolve_space(plan, space, defaults=not no_defaults)), markup=False)
    with progress_bars() as progress:
        summary = tune(
            dataset_dir, out, trials=trials, budget_minutes=minutes, space=space, default_space=not no_defaults,
            fixed=set_, address=ray, grace_epochs=grace, reduction_factor=reduction, seed=seed, overwrite=overwrite,
            progress=progress,
        )  # fmt: skip
    best, monitor = summary["best"], summary["monitor"]
    console.print(
        f"{summary['finished']} trial(s) finished, {summary['stopped_early']} stopped early, {summary['failed']} "
        f"failed in {summary['seconds']:.0f} s; best {best['trial']}: {monitor} {best[f'best_{monitor}']:.4f}",
        markup=False,
    )
    console.print(f"best run: {Path(out) / 'best'}; trials: {Path(out) / 'trials.csv'}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)
