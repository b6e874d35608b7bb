"""Search plan keys with Ray Tune and ASHA: ``medlens tune DATASET --out TUNE --trials 16 [--budget 60m]``.

Each trial is an ordinary training run (:func:`medlens.workflows.training.train`) with ``--set`` overrides drawn from
the search space (:mod:`medlens.cluster.search_space`); it reports the plan's validation monitor after every
validation (a callback added through :mod:`medlens.training.observers`), so that ASHA stops the trials that trail
at each rung. The best finished trial (by its run's best validation monitor) is the result. Output::

    TUNE/
      .medlens
      search_space.yaml    # the dimensions searched, and the rule behind each default one
      trials/trial_NN/     # every trial's run folder (a stopped trial's holds its checkpoints, no bundle)
      best/                # a copy of the best trial's run folder, with its bundle: use it as any run
      trials.csv           # one row per trial: status, epochs, best monitor, values, seconds
      trials.png           # the monitor per epoch of every trial, the best one marked
      tune.json            # the settings, the best trial and its values
      ray/                 # Ray Tune's own records of the experiment

With a total budget, every trial gets ``budget * concurrent trials / trials`` minutes (what they would take if
none were stopped), and Tune ends the experiment at the total budget whatever is still running.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml

from medlens.cluster.search_space import Dimension, overrides, resolve_space, written
from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import output_folder, write_json, write_table, write_text_atomic
from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.data.dataset import load_dataset
from medlens.training.overrides import apply_overrides
from medlens.workflows.planning import resolve_plan

log = logging.getLogger(__name__)


def tune(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    trials: int = 16,
    budget_minutes: float | None = None,
    space: Sequence[str] = (),
    default_space: bool = True,
    fixed: Sequence[str] = (),
    address: str | None = None,
    grace_epochs: int = 1,
    reduction_factor: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run ``trials`` training runs with values drawn from the search space; ASHA stops the weak ones early.

    Args:
        dataset_dir: a dataset folder (its plan is the starting point).
        out: the folder to create.
        trials: how many trials to draw.
        budget_minutes: total wall-clock budget of the search (None: each trial as its plan says).
        space: dimensions ``KEY=KIND(ARGS)`` replacing or adding to the default space.
        default_space: start from the default space (:func:`medlens.cluster.search_space.default_space`).
        fixed: ``key=value`` overrides every trial gets.
        address: a Ray cluster (``HOST:PORT``); None: a local Ray on 127.0.0.1 for this call.
        grace_epochs: ASHA's first rung: every trial trains at least this many validations.
        reduction_factor: ASHA keeps the best 1/reduction_factor of the trials at each rung.
        seed: seed of the random draws.
        overwrite: replace an existing output folder (only one medlens made).
        progress: called as trials finish (stage ``trials``).

    Returns:
        The summary written to ``tune.json``: the best trial, its values and monitor, and every trial's row.

    Example:
        >>> import medlens.workflows.tuning as tuning
        >>> tuning.tune("datasets/pneumonia", "tune/pneumonia", trials=8, budget_minutes=30)  # doctest: +SKIP
    """
    if trials < 1:
        raise ConfigError("--trials", "at least one trial")
    dataset = load_dataset(dataset_dir)
    plan = resolve_plan(dataset, list(fixed))
    dimensions = resolve_space(plan, space, defaults=default_space)
    for dimension in dimensions:  # an unknown key or a value the plan refuses fails now, not in every trial
        for value in dimension.values if dimension.kind == "choice" else dimension.values[:1]:
            apply_overrides(plan, [f"{dimension.key}={written(value)}"])
    monitor, mode = plan.train.monitor, plan.train.monitor_mode
    with output_folder(out, kind="tune", overwrite=overwrite, inputs=[("dataset", dataset.root)]) as tmp:
        write_text_atomic(tmp / "search_space.yaml", space_yaml(dimensions))
        start = time.monotonic()
        results, concurrent, per_trial = _search(
            dataset.root, tmp, dimensions, list(fixed), trials, budget_minutes, plan.train.max_epochs,
            plan.train.val_every_epochs, monitor, mode, address, grace_epochs, reduction_factor, seed, progress,
        )  # fmt: skip
        rows, curves = _trial_rows(results, tmp, dimensions, monitor, mode)
        finished = [r for r in rows if r["status"] == "finished" and r[f"best_{monitor}"] is not None]
        if not finished:
            raise InputError(tmp / "trials", "no trial finished (a budget too small for one epoch?); see trials.csv")
        best = (max if mode == "max" else min)(finished, key=lambda r: r[f"best_{monitor}"])
        shutil.copytree(tmp / "trials" / best["trial"], tmp / "best", symlinks=True)
        write_table(tmp / "trials.csv", rows)
        (tmp / "trials.png").write_bytes(trials_plot(curves, best["trial"], monitor))
        summary = {
            "dataset": str(dataset.root.resolve()),
            "trials": trials,
            "concurrent_trials": concurrent,
            "budget_minutes": budget_minutes,
            "trial_budget_minutes": per_trial,
            "scheduler": {
                "name": "ASHA",
                "grace_epochs": grace_epochs,
                "reduction_factor": reduction_factor,
                "max_epochs": plan.train.max_epochs,
            },
            "monitor": monitor,
            "mode": mode,
            "seed": seed,
            "space": [d.text() for d in dimensions],
            "fixed": list(fixed),
            "best": best,
            "finished": len(finished),
            "stopped_early": sum(r["status"] == "stopped early" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "seconds": round(time.monotonic() - start, 1),
            "rows": rows,
        }
        write_json(tmp / "tune.json", summary)
    return summary


def space_yaml(dimensions: Sequence[Dimension]) -> str:
    """The search space as written to ``search_space.yaml`` (and printed by the command line)."""
    entries = [{"key": d.key, "distribution": d.text().split("=", 1)[1], "why": d.why} for d in dimensions]
    return yaml.safe_dump({"space": entries}, sort_keys=False, allow_unicode=True)


def _search(
    dataset_root: Path,
    folder: Path,
    dimensions: list[Dimension],
    fixed: list[str],
    trials: int,
    budget_minutes: float | None,
    max_epochs: int,
    val_every: int,
    monitor: str,
    mode: str,
    address: str | None,
    grace_epochs: int,
    reduction_factor: int,
    seed: int,
    progress: ProgressFn | None,
) -> tuple[Any, int, float | None]:
    """Run the trials on Ray Tune; return Tune's results, the concurrent trials, and each trial's budget."""
    from medlens.cluster.session import ray_session

    with ray_session(address) as ray:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator

        concurrent = max(1, min(trials, int(ray.cluster_resources().get("CPU", 1))))
        per_trial = budget_minutes * concurrent / trials if budget_minutes else None
        trials_dir = str((folder / "trials").resolve())  # absolute: Tune runs each trial in a folder of its own
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, dataset=str(dataset_root.resolve()), trials_dir=trials_dir, fixed=fixed,
                                 budget_minutes=per_trial, monitor=monitor),
            {"cpu": 1},
        )  # fmt: skip
        scheduler = ASHAScheduler(
            # one rung past the last validation: ASHA stops a trial for reaching max_t, which would cut a trial that
            # trained all its epochs before its run writes the bundle
            time_attr="training_iteration", max_t=max(1, max_epochs // val_every) + 1, grace_period=grace_epochs,
            reduction_factor=reduction_factor,
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space={d.key: d.to_tune() for d in dimensions},
            tune_config=tune.TuneConfig(
                metric=monitor, mode=mode, scheduler=scheduler, num_samples=trials,
                search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=concurrent),
                time_budget_s=budget_minutes * 60 if budget_minutes else None,
            ),
            run_config=tune.RunConfig(
                name="ray", storage_path=str(folder.resolve()), verbose=0, callbacks=[_TrialProgress(progress, trials)],
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )  # fmt: skip
        report_progress(progress, "trials", 0, trials)
        return tuner.fit(), concurrent, per_trial


def run_trial(
    config: dict[str, Any],
    *,
    dataset: str,
    trials_dir: str,
    fixed: list[str],
    budget_minutes: float | None,
    monitor: str,
) -> None:
    """One trial (in a Ray worker): an ordinary ``train`` run into ``trials_dir/trial_NN``, reporting each
    validation's ``monitor`` to Tune."""
    from ray import tune

    from medlens.training.observers import observing
    from medlens.workflows.training import train

    run_dir = Path(trials_dir) / trial_folder(tune.get_context().get_trial_id())
    with observing(TuneReporter(monitor)):
        train(
            dataset,
            run_dir,
            budget_minutes=budget_minutes,
            overrides=[*fixed, *overrides(config)],
            overwrite=run_dir.exists(),
        )  # fmt: skip (a retried trial starts again)


def trial_folder(trial_id: str) -> str:
    """``trial_NN`` from Tune's trial id (``abc12_00003`` -> ``trial_03``)."""
    number = trial_id.rsplit("_", 1)[-1]
    return f"trial_{int(number):02d}" if number.isdigit() else f"trial_{trial_id}"


class TuneReporter(pl.Callback):
    """A Lightning callback reporting each validation's ``monitor`` (and the epoch) to Ray Tune.

    Lightning runs its checkpoint callback after every other one at the end of an epoch, and ASHA may stop a trial as
    soon as it reports: so an epoch's figure is reported when the next epoch starts (or training ends), after that
    epoch's checkpoint is saved, and a stopped trial keeps its checkpoints.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.pending: dict[str, float] | None = None

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None:
            self.pending = {self.monitor: float(value), "epoch": int(trainer.current_epoch) + 1}

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self._report()

    def on_train_end(self, trainer: Any, module: Any) -> None:
        self._report()

    def _report(self) -> None:
        from ray import tune

        if self.pending is not None:
            pending, self.pending = self.pending, None
            tune.report(pending)


class _TrialProgress:
    """Reports finished trials to a progress callback (a Tune callback, in the driver)."""

    def __new__(cls, progress: ProgressFn | None, total: int) -> Any:
        from ray import tune

        class Reporter(tune.Callback):  # type: ignore[misc]
            done = 0

            def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                self.done += 1
                report_progress(progress, "trials", self.done, total)

            def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                self.on_trial_complete(iteration, trials, trial)

        return Reporter()


def _trial_rows(
    results: Any, folder: Path, dimensions: list[Dimension], monitor: str, mode: str
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """One row per trial (sorted by name) and each trial's monitor per validation."""
    import json

    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    for result in results:
        config = result.config or {}
        name = _trial_name(result)
        run = folder / "trials" / name
        frame = result.metrics_dataframe
        curve = [float(v) for v in frame[monitor].dropna()] if frame is not None and monitor in frame else []
        curves[name] = curve
        summary_file = run / "train_summary.json"
        best: float | None = None
        if result.error is not None:
            status = "failed"
        elif (run / "bundle" / "bundle.yaml").is_file() and summary_file.is_file():
            status = "finished"
            recorded = json.loads(summary_file.read_text(encoding="utf-8"))
            best = recorded.get("val_monitor_mean")
        else:
            status = "stopped early"
        if best is None and curve:
            best = max(curve) if mode == "max" else min(curve)
        rows.append(
            {
                "trial": name,
                "status": status,
                "validations": len(curve),
                f"best_{monitor}": best,
                **{d.key: written(config.get(d.key)) for d in dimensions},
                "seconds": round(float(result.metrics.get("time_total_s", 0.0) or 0.0), 1) if result.metrics else None,
                "error": str(result.error).splitlines()[0][:200] if result.error is not None else "",
            }
        )
    rows.sort(key=lambda r: r["trial"])
    return rows, curves


def _trial_name(result: Any) -> str:
    trial_id = str(result.metrics.get("trial_id", "")) if result.metrics else ""
    if not trial_id and result.path:  # a trial that reported nothing: Tune's folder name ends with its id
        parts = Path(result.path).name.split("_")
        trial_id = "_".join(parts[1:3]) if len(parts) > 2 else Path(result.path).name
    return trial_folder(trial_id)


def trials_plot(curves: dict[str, list[float]], best: str, monitor: str) -> bytes:
    """PNG: every trial's monitor per validation (a trial stopped by ASHA ends early), the best trial in bold."""
    from matplotlib.ticker import MaxNLocator

    from medlens.reports.figures import colour, figure, png

    fig = figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for index, (name, curve) in enumerate(sorted(curves.items())):
        if not curve:
            continue
        chosen = name == best
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, color=colour(index),
                linewidth=2.5 if chosen else 1.0, alpha=1.0 if chosen else 0.6,
                label=f"{name} (best)" if chosen else name)  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("validation (epoch)")
    ax.set_ylabel(monitor)
    ax.set_title(f"{len(curves)} trials; ASHA stops the trailing ones")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return png(fig)
