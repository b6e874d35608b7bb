"""``medlens import ...`` and ``medlens plan``."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.data.dataset import Dataset

OUT = typer.Option(..., "--out", "-o", help="Dataset folder to create (dataset.yaml + manifest.csv).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing dataset folder.")
SEED = typer.Option(
    0, "--seed", help="Seed of the patient-level split (data without splits) and of the --label-fraction choice."
)
LABEL_FRACTION = typer.Option(
    1.0,
    "--label-fraction",
    min=0.0,
    max=1.0,
    help="Keep the labels of this share of the TRAINING cases (stratified by label, whole patients, at least one "
    "per class, seeded by --seed); the other training images stay unlabeled, for 'medlens pretrain'. Validation "
    "and test keep every label.",
)
VAL = typer.Option(0.1, "--val-fraction", help="Share of patients for validation (data without splits).")
TEST = typer.Option(0.2, "--test-fraction", help="Share of patients for testing (data without splits).")

import_app = typer.Typer(
    help="Turn data as it arrives into a medlens dataset (dataset.yaml + manifest.csv, one row per case).",
    no_args_is_help=True,
)


@import_app.command("medmnist")
def import_medmnist_cmd(
    path: Path = typer.Argument(..., help="A MedMNIST .npz archive (2D or 3D, any size, e.g. pneumoniamnist.npz)."),
    out: Path = OUT,
    label_fraction: float = LABEL_FRACTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the --label-fraction choice."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a MedMNIST archive, keeping its official train/val/test splits."""
    from medlens.cli.progress import progress_bars
    from medlens.data.importers import get_importer

    with progress_bars() as progress:
        dataset = get_importer("medmnist")(
            path, out, overwrite=overwrite, label_fraction=label_fraction, seed=seed, progress=progress
        )
    report_dataset(dataset)


@import_app.command("folder")
def import_folder_cmd(
    folder: Path = typer.Argument(..., help="Folder with one subfolder per class (optionally under train/val/test)."),
    out: Path = OUT,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import class subfolders of PNG, JPEG, TIFF, DICOM or NIfTI images."""
    from medlens.data.importers import get_importer

    dataset = get_importer("folder")(
        folder,
        out,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
        overwrite=overwrite,
    )
    report_dataset(dataset)


@import_app.command("csv")
def import_csv_cmd(
    table: Path = typer.Argument(..., help="CSV with an image path column and a label column."),
    out: Path = OUT,
    image_column: str = typer.Option("image", help="Column holding image paths (relative to the CSV)."),
    label_column: str = typer.Option("label", help="Column holding class names ('a|b' for several labels)."),
    patient_column: str = typer.Option("patient_id", help="Column holding patient IDs (splits keep patients whole)."),
    split_column: str = typer.Option("split", help="Column holding train/val/test (optional)."),
    target_type: str = typer.Option(
        "categorical",
        "--target-type",
        help="categorical: the label column holds class names (classification); continuous: it holds numbers "
        "(regression, one value per image).",
    ),
    unit: str = typer.Option("", "--unit", help="Unit of a continuous target, e.g. mL (shown with predictions)."),
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a CSV table of image paths and labels (class names, or numbers with --target-type continuous)."""
    from medlens.data.importers import get_importer

    dataset = get_importer("csv")(
        table,
        out,
        image_column=image_column,
        label_column=label_column,
        patient_column=patient_column,
        split_column=split_column,
        target_type=target_type,
        unit=unit,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
        overwrite=overwrite,
    )
    report_dataset(dataset)


@import_app.command("table")
def import_table_cmd(
    table: Path = typer.Argument(
        ..., help="CSV table: image paths and labels, or (--task sequence) one row per visit."
    ),
    out: Path = OUT,
    task: str = typer.Option(
        "classification",
        "--task",
        help="classification or regression: as 'import csv' (an image per row); sequence: rows are visits, one "
        "outcome per subject (--subject, --order, --target).",
    ),
    subject: str = typer.Option("", "--subject", help="sequence: column of subject IDs (a subject's visits)."),
    order: str = typer.Option("", "--order", help="sequence: column ordering a subject's visits."),
    target: str = typer.Option("label", "--target", help="Column of the outcome (sequence: read at the last visit)."),
    exclude: str = typer.Option("", "--exclude", help="sequence: comma-separated columns not to learn from."),
    positive: str = typer.Option(
        "",
        "--positive",
        help="sequence: comma-separated target value(s) of the positive class (default: the one value that reads as "
        "the absence of the condition, e.g. Nondemented, is negative; all others positive).",
    ),
    images: str = typer.Option(
        "",
        "--images",
        help="sequence: comma-separated column(s) of image paths (PNG, DICOM, NIfTI...; relative to the table's "
        "folder or absolute): each visit's image becomes embedding features by --encoder, computed once and kept in "
        "the dataset's visits.csv. Every visit needs its image (a missing one is an error naming it).",
    ),
    encoder: Path | None = typer.Option(
        None,
        "--encoder",
        help="sequence with --images: the frozen image encoder, a medlens classification or regression run (its "
        "network's penultimate features) or a 'medlens pretrain' folder. No default: medlens downloads none.",
    ),
    image_column: str = typer.Option("image", help="classification/regression: column of image paths."),
    patient_column: str = typer.Option("patient_id", help="classification/regression: column of patient IDs."),
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a CSV table: as 'import csv' (images and labels), or with --task sequence a table of visits.

    With --task sequence each subject becomes one case (its visits in order); the split is by subject, stratified
    by outcome; identifiers, constant columns and columns that alone separate the outcome (AUC >= 0.95 on the
    training subjects, e.g. OASIS-2's CDR) are excluded and recorded in dataset.yaml. With --images COLUMN
    --encoder RUN each visit's image joins its measurements as embedding features (the transformer and the
    last-visit baselines alike).
    """
    from medlens.cli.progress import progress_bars
    from medlens.data.importers import get_importer
    from medlens.tasks.base import get_task, list_tasks

    served = get_task(task)
    importer = served.table_importer if served.name == task else ""  # an alias (multilabel) has no table of its own
    if importer == "visits":
        if not subject or not order:
            raise typer.BadParameter("--task sequence needs --subject and --order")
        with progress_bars() as progress:
            dataset = get_importer("visits")(
                table,
                out,
                subject_column=subject,
                order_column=order,
                target_column=target,
                exclude=[c.strip() for c in exclude.split(",") if c.strip()],
                positive=[c.strip() for c in positive.split(",") if c.strip()],
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                images=[c.strip() for c in images.split(",") if c.strip()],
                encoder=encoder,
                overwrite=overwrite,
                progress=progress,
            )
    else:
        if images or encoder is not None:
            raise typer.BadParameter("--images and --encoder are for --task sequence")
        if not importer:
            takes = ", ".join(sorted({get_task(t).name for t in list_tasks() if get_task(t).table_importer}))
            raise typer.BadParameter(f"--task {task!r}: its labels are not table columns (tables serve {takes})")
        dataset = get_importer(importer)(
            table,
            out,
            image_column=image_column,
            label_column=target,
            patient_column=patient_column,
            target_type=served.table_label,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            overwrite=overwrite,
        )
    report_dataset(dataset)


def class_names_option(text: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list (blanks dropped), or None when not given."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def report_dataset(dataset: Dataset) -> None:
    """Print what an importer wrote: cases, task, dimensions, classes, split sizes, folder."""
    from collections import Counter

    from rich.console import Console

    counts = Counter(c.split or "unsplit" for c in dataset.cases)  # 'unlabeled' counted too (--label-fraction)
    Console().print(
        f"[bold]{dataset.spec.name}[/]: {len(dataset.cases)} cases ({dataset.spec.task}, "
        f"{dataset.spec.spatial_dims}D, {len(dataset.spec.classes)} classes); "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f"\nwritten to {dataset.root}"
    )


def plan_cmd(
    dataset_dir: Path = typer.Argument(..., help="A dataset folder (from 'medlens import')."),
    set_: list[str] = typer.Option([], "--set", help="Override a plan field, e.g. --set train.batch_size=32."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing plan.yaml (it may hold your edits)."
    ),
) -> None:
    """Fingerprint the dataset and write DATASET_DIR/plan.yaml; print each choice and why.

    Edit plan.yaml, or pass --set key=value here or to 'medlens train', to change any choice.
    """
    from rich.console import Console
    from rich.table import Table

    from medlens.workflows.planning import plan as make_plan

    plan, path = make_plan(dataset_dir, set_, overwrite=overwrite)
    table = Table(title=f"plan for {dataset_dir}", show_lines=False)
    table.add_column("choice")
    table.add_column("value")
    table.add_row("task", f"{plan.task} {plan.spatial_dims}D, {len(plan.class_names)} classes")
    table.add_row(
        "input",
        f"{plan.data.input_size} x {plan.data.channels} ch, {plan.data.normalization}, clip {plan.data.clip}",
    )
    table.add_row("network", f"{plan.model.name} {plan.model.kwargs}")
    table.add_row(
        "augmentation",
        f"flip {plan.augment.flip_axes}, rotate {plan.augment.rotate_degrees}°, scale {plan.augment.scale}",
    )
    table.add_row(
        "optimiser",
        f"{plan.optim.name} lr {plan.optim.lr} wd {plan.optim.weight_decay}, {plan.optim.schedule}",
    )
    table.add_row(
        "training",
        f"batch {plan.train.batch_size}, up to {plan.train.max_epochs} epochs, budget {plan.train.budget_minutes} min",
    )
    console = Console()
    console.print(table)
    for note in plan.notes:
        console.print(f"  - {note}")
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.command("plan")(plan_cmd)
