"""``medlens train``, ``evaluate``, ``predict`` and ``models``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from medlens.core.errors import ConfigError


def parse_duration(text: str, option: str = "--budget") -> float:
    """'90s', '10m', '1.5h' or a bare number of minutes -> minutes (``option`` is named when it is none)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not match:
        raise ConfigError(option, f"{text!r} is not a duration (e.g. 90s, 10m, 1h)")
    value, unit = float(match.group(1)), match.group(2) or "m"
    return value / 60 if unit == "s" else value * 60 if unit == "h" else value


OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output folder (only one medlens made).")


def train_cmd(
    dataset_dir: Path = typer.Argument(..., help="A dataset folder; its plan.yaml is used when present."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (checkpoints, logs, bundle)."),
    budget: str | None = typer.Option(
        None, "--budget", help="Training time per member, e.g. 10m, 1h (the schedule anneals to it)."
    ),
    seeds: int = typer.Option(
        1, "--seeds", help="Train N seeds; their ensemble is the model, their spread is reported."
    ),
    folds: int | None = typer.Option(
        None, "--folds", help="k-fold cross-validation over train+val instead of seeds; the folds form the ensemble."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a plan field, e.g. --set optim.lr=0.001."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run from its last checkpoints (same dataset and plan)."
    ),
    overwrite: bool = OVERWRITE,
    devices: int = typer.Option(
        1,
        "--devices",
        help="Processes per node: GPUs, or CPU processes. Above 1, trains with DDP through Lightning (gloo on CPU, "
        "NCCL on GPU); train.batch_size stays the global batch, each process takes batch_size/(devices x nodes). Under "
        "torchrun or srun, give the same number as processes per node: nothing is started again.",
    ),
    nodes: int = typer.Option(1, "--nodes", help="Machines, each running --devices processes (torchrun or srun)."),
    strategy: str = typer.Option("auto", "--strategy", help="ddp, or auto (ddp when there is more than 1 process)."),
) -> None:
    """Train a model on a dataset as its plan says (every task: classification, segmentation, detection, ...).

    With --devices/--nodes the run trains in several processes (DDP); docs/cluster.md shows SLURM and torchrun.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.training.distributed import is_rank_zero
    from medlens.workflows.training import train

    if strategy not in ("auto", "ddp"):
        raise ConfigError("--strategy", f"{strategy!r} is not a strategy (ddp or auto)")
    minutes = parse_duration(budget) if budget else None
    lead = is_rank_zero()  # the other processes of a DDP run train silently; rank 0 draws and prints
    with progress_bars(enabled=lead) as progress:
        summary = train(
            dataset_dir, out, budget_minutes=minutes, seeds=seeds, folds=folds, overrides=set_, resume=resume,
            overwrite=overwrite, progress=progress, devices=devices, nodes=nodes,
            strategy=strategy,  # type: ignore[arg-type]
        )  # fmt: skip
    if not lead:
        return
    console = Console()
    for s in summary.get("member_summaries", []):
        monitor = s.get("monitor", "val_auc")
        best = s.get(f"best_{monitor}")
        shown = f"{best:.4f}" if isinstance(best, float) else "n/a"
        console.print(f"{s['member']}: best {monitor} {shown}, {s['epochs']} epochs, {s['train_seconds']:.0f} s")
    console.print(f"model bundle: {Path(out) / 'bundle'}")


def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (or a bundle folder)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to create for metrics.json, report.html and plots (outside the run folder)."
    ),
    dataset: Path | None = typer.Option(None, "--dataset", help="Evaluate on another dataset (default: the run's)."),
    split: str = typer.Option("test", "--split", help="test, val, train or all."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% confidence intervals."),
    by: str | None = typer.Option(
        None,
        "--by",
        help="Report every metric per subgroup of this manifest column (e.g. PatientSex, PatientAge, Manufacturer, "
        "site); flags a subgroup whose interval lies wholly below the rest's.",
    ),
    update_card: bool = typer.Option(
        False,
        "--update-card",
        help="Also record these figures in the bundle (evaluation.json) and its model card; reports then quote them "
        "as the model's validated performance. Without it the bundle is left as it is (OUT/model_card.md has them).",
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Measure a trained model: metrics with 95% bootstrap CIs (over patients when cases share them), curves,
    calibration and uncertainty, per subgroup with --by, report.html, model_card.md."""
    from rich.console import Console
    from rich.table import Table

    from medlens.cli.progress import progress_bars
    from medlens.workflows.evaluation import evaluate

    with progress_bars() as progress:
        metrics = evaluate(
            run_dir, out, dataset=dataset, split=split, n_bootstrap=bootstrap, by=by, overwrite=overwrite,
            update_card=update_card, progress=progress,
        )  # fmt: skip
    table = Table(title=f"{split} metrics ({metrics.get('n_cases', '?')} cases)")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for key, entry in metrics.items():  # every headline metric: a {value, ci95} entry at the top level
        if isinstance(entry, dict) and isinstance(entry.get("value"), float) and "ci95" in entry:
            lo, hi = entry["ci95"]
            ci = f"{lo:.4f} - {hi:.4f}" if lo is not None and hi is not None else "-"
            table.add_row(key, f"{entry['value']:.4f}", ci)
    console = Console()
    console.print(table)
    if "subgroups" in metrics:
        sub = metrics["subgroups"]
        flagged = ", ".join(sub["flagged"]) or "none"
        console.print(
            f"subgroups by {sub['column']}: {len(sub['groups'])}; flagged ({sub['headline']} below the rest): {flagged}"
        )
    console.print(f"report: {Path(out) / 'report.html'}")


def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder or a bundle folder."),
    inputs: list[Path] = typer.Argument(
        ..., help="Images or folders: PNG, JPEG, TIFF, GIF, DICOM files and series, NIfTI, NRRD, MHA, npz."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to create: one JSON per input, predictions.csv, masks and overlays."
    ),
    tta: bool = typer.Option(False, "--tta", help="Segmentation: mirror test-time augmentation."),
    dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Segmentation of DICOM input: also write a DICOM SEG."),
    pictures: bool = typer.Option(True, "--pictures/--no-pictures", help="Write overlay pictures (PNG)."),
    nonfinite: str = typer.Option(
        "refuse",
        "--nonfinite",
        help="Inputs with NaN or infinite pixels: 'refuse' (skipped with the reason) or 'clean' (replaced by the "
        "image's own minimum/maximum, and flagged in the prediction).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit with code 1 when any input was skipped (default: only when none was predicted)."
    ),
    report: bool = typer.Option(
        False,
        "--report",
        help="Write a clinical report per input: OUT/reports/<name>.json (findings, uncertainty, the model's validated "
        "performance, explanation images) and a plain-language text per language generated from it.",
    ),
    dicom_sr: bool = typer.Option(
        False,
        "--dicom-sr",
        help="DICOM input: also write a DICOM SR (TID 1500 measurement report) as OUT/reports/<name>.sr.dcm; implies "
        "--report, and for segmentation writes the DICOM SEG it references.",
    ),
    lang: str | None = typer.Option(
        None, "--lang", help="Languages of the report texts, comma-separated (default: en,zh). Needs --report."
    ),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Also explain each input with the model's default method (the most faithful on validation, chosen at "
        "training): an overlay PNG, the map, a DICOM Secondary Capture for DICOM input; the report names them. "
        "For other methods and faithfulness scores, see 'medlens explain'.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Predict on Ray (many inputs; also lists: .txt files of paths, one a line): an actor pool writes each "
        "input's files as it goes, and the same command run again finishes what is missing. --ray alone (or --ray "
        "local) starts a local Ray on all cores; --ray HOST:PORT uses a running cluster.",
    ),
    actors: int | None = typer.Option(
        None, "--actors", min=1, help="With --ray: predicting actors, one CPU each (default: every CPU of the cluster)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Predict with a trained model; inputs that cannot be read or predicted are skipped with the reason."""
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.core.errors import ConfigError
    from medlens.workflows.prediction import predict

    if nonfinite not in ("refuse", "clean"):
        raise ConfigError("--nonfinite", f"{nonfinite!r} is not one of refuse, clean")
    if actors is not None and ray is None:
        raise ConfigError("--actors", "sets the Ray actor pool: add --ray")
    options: dict[str, Any] = {
        "tta": tta, "dicom_seg": dicom_seg, "pictures": pictures, "nonfinite": nonfinite, "report": report,
        "dicom_sr": dicom_sr, "languages": lang.split(",") if lang is not None else None, "explain": explain,
    }  # fmt: skip
    with progress_bars() as progress:
        if ray is not None:
            from medlens.workflows.batch_prediction import predict_on_ray

            run = predict_on_ray(
                run_dir, inputs, out, address=ray, actors=actors, overwrite=overwrite, progress=progress, **options
            )
        else:
            run = predict(run_dir, inputs, out, overwrite=overwrite, progress=progress, **options)
    console = Console(stderr=True)
    for source, reason in run.skipped:
        console.print(f"skipped {source}: {reason}", markup=False, highlight=False, soft_wrap=True)
    referred = sum(1 for p in run.predictions if p.get("refer"))
    Console().print(
        f"{len(run.predictions)} prediction(s) written to {Path(out) / 'predictions.csv'}"
        + (f"; {referred} flagged for a person to read (refer)" if referred else "")
        + (f"; {len(run.skipped)} input(s) skipped (see skipped.csv)" if run.skipped else "")
    )
    if strict and run.skipped:
        raise typer.Exit(1)


def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder or a bundle folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model.onnx and export.json."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8: also write model_int8.onnx (ONNX Runtime static quantisation, QDQ, calibrated on the run's "
        "validation images; per-tensor and per-channel weights both tried, the faster one within --max-drop kept).",
    ),
    max_drop: float = typer.Option(
        0.01, "--max-drop", help="Largest loss of the validation metric (AUC, Dice) the int8 graph may have."
    ),
    force: bool = typer.Option(False, "--force", help="Write the int8 graph even when it loses more than --max-drop."),
    dataset: Path | None = typer.Option(
        None,
        "--dataset",
        help="Dataset whose validation split calibrates and scores the int8 graph (default: the run's).",
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Export a trained model to ONNX (all members in one graph), checked against PyTorch with ONNX Runtime.

    With --quantize int8, export.json's "quantization" records the validation metric of the fp32 and int8 graphs
    and the int8 throughput over fp32 (one thread each, same run); the export is refused, and nothing written, when
    the int8 graph loses more than --max-drop, unless --force.

    export.json says what goes in and comes out: classification takes resized images in raw units and gives
    probabilities; segmentation takes normalised patches and gives voxel probabilities (the sliding window
    stays with the caller); detection takes one image of any size and gives boxes, scores and labels;
    regression takes resized images and gives the value.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.workflows.exporting import export_onnx

    with progress_bars() as progress:
        spec = export_onnx(
            run_dir, out, opset=opset, overwrite=overwrite, quantize=quantize, max_drop=max_drop, force=force,
            dataset=dataset, progress=progress,
        )  # fmt: skip
    worst = max((v for c in spec["verification"]["checks"] for k, v in c.items() if k.startswith("max_abs")), default=0)
    Console().print(
        f"{spec['task']} model ({spec['members']} member(s)) written to {Path(out) / 'model.onnx'}; "
        f"ONNX Runtime matches PyTorch within {worst:.2g}"
    )
    q = spec.get("quantization")
    if q:
        Console().print(
            f"int8 graph {Path(out) / q['file']}: validation {q['metric']} {q['int8']:.4f} (fp32 {q['fp32']:.4f}), "
            f"{q['throughput_ratio']:.2f}x the fp32 throughput" + (" (kept with --force)" if q["forced"] else "")
        )
        if q["throughput_ratio"] < 1:  # small layers: quantising and dequantising costs more than int8 saves
            Console(stderr=True).print(
                f"warning: the int8 graph is slower than fp32 on this machine ({q['throughput_ratio']:.2f}x); "
                f"deploy {Path(out) / 'model.onnx'} unless its smaller size matters more",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )


def models_cmd(
    task: str | None = typer.Option(None, "--task", help="Only models for this task (see the tasks column)."),
) -> None:
    """List the model registry: name, the tasks it serves, dimensions, parameter count."""
    from rich.console import Console
    from rich.table import Table

    from medlens.models import list_models
    from medlens.tasks import get_task, list_tasks

    serves: dict[str, list[str]] = {}
    for name in list_tasks():
        serves.setdefault(get_task(name).model_output, []).append(name)
    table = Table(title="medlens models")
    table.add_column("name", no_wrap=True)
    for col in ("tasks", "dims", "source", "parameters"):
        table.add_column(col)
    table.add_column("description", ratio=1)
    for row in list_models(get_task(task).model_output if task else None):
        table.add_row(
            row["name"],
            ", ".join(serves.get(row["output"], [])),
            "/".join(f"{d}D" for d in row["spatial_dims"]),
            row["source"],
            f"{row['parameters'] / 1e6:.2f} M",
            row["description"],
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    from medlens.cli.cluster_commands import OptionalValueCommand

    app.command("predict", cls=OptionalValueCommand)(predict_cmd)
    app.command("export")(export_cmd)
    app.command("models")(models_cmd)
