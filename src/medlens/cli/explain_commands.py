"""``medlens explain``: maps of why a model answered as it did, and their measured faithfulness (``--score``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medlens.cli.model_commands import OVERWRITE
from medlens.core.errors import ConfigError

METHODS = "gradcam, gradcam++, scorecam, eigencam, occlusion or integrated-gradients"


def explain_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder or a bundle folder."),
    inputs: list[Path] | None = typer.Argument(
        None, help="Images or folders to explain (as predict takes them); none with --score."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder to create: per input a PNG overlay, the map (NIfTI for volumes, npz for pictures), a DICOM "
        "Secondary Capture for DICOM input and a JSON; with --score faithfulness.json and scoring.json.",
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help=f"{METHODS} (those the task supports). Default: the method training chose on validation by "
        "faithfulness (recorded in the bundle). With --score: score only this method.",
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        help="The class to explain (default: the model's answer: the predicted class, the largest predicted "
        "region's class, the best box).",
    ),
    score: bool = typer.Option(
        False,
        "--score",
        help="Measure the methods instead: deletion and insertion AUC with 95% intervals against a random order, "
        "model-randomisation similarity, time per image; writes faithfulness.json.",
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="With --score: the dataset whose images are explained (default: the run's)."
    ),
    split: str | None = typer.Option(None, "--split", help="With --score: test (default), val, train or all."),
    images: int | None = typer.Option(
        None, "--images", help="With --score: at most this many images, spread over the split (default 100)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Explain a trained model's answers (where in the image it found them), or measure how faithful each
    explanation method is (--score).

    Classification and regression (2D and 3D) and segmentation take every method; detection takes eigencam and
    occlusion. Volumes are shown as planes through the map's peak. Every explanation has a measured quality:
    training chose each bundle's default method on validation images by the same score that --score writes.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars

    if score:
        if inputs:
            raise ConfigError("INPUT", "--score explains images of a dataset split; give no inputs with it")
        if target is not None:
            raise ConfigError("--target", "--score explains the model's own answer for each image")
        from rich.table import Table

        from medlens.workflows.explaining import score as score_methods

        with progress_bars() as progress:
            result = score_methods(
                run_dir, out, dataset=dataset, split=split or "test", methods=[method] if method else None,
                n_images=100 if images is None else images, overwrite=overwrite, progress=progress,
            )  # fmt: skip
        table = Table(title=f"faithfulness on {result.n_images} {split or 'test'} image(s)")
        columns = ("method", "deletion AUC (lower: better)", "insertion AUC (higher: better)", "randomisation", "time")
        for column in columns:
            table.add_column(column)
        rows = dict(result.scores["methods"])
        rows["random order"] = result.scores["baselines"]["random"]
        for name, entry in rows.items():
            ratio = result.timing.get(name, {}).get("time_ratio_to_prediction")
            table.add_row(
                name,
                _interval(entry["deletion_auc"]),
                _interval(entry["insertion_auc"]),
                _interval(entry["randomization_similarity"]) if "randomization_similarity" in entry else "",
                f"{ratio}x a prediction" if ratio is not None else "",
            )
        console = Console()
        console.print(table)
        console.print(f"default: {result.why}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"written to {Path(out) / 'faithfulness.json'}")
        return
    if dataset is not None or split is not None or images is not None:
        raise ConfigError("--dataset/--split/--images", "only with --score")
    if not inputs:
        raise ConfigError("INPUT", "give images to explain, or --score to measure the methods on a dataset")
    from medlens.workflows.explaining import explain

    with progress_bars() as progress:
        run = explain(run_dir, inputs, out, method=method, target=target, overwrite=overwrite, progress=progress)
    console = Console(stderr=True)
    for source, reason in run.skipped:
        console.print(f"skipped {source}: {reason}", markup=False, highlight=False, soft_wrap=True)
    Console().print(
        f"{len(run.explanations)} explanation(s) ({run.method}) written to {Path(out)}"
        + (f"; {len(run.skipped)} input(s) skipped (see skipped.csv)" if run.skipped else "")
    )


def _interval(entry: dict[str, Any]) -> str:
    value = entry.get("value")
    lo, hi = entry.get("ci95") or (None, None)
    if not isinstance(value, float):
        return "-"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_cmd)
