"""``medlens import msd`` and ``medlens import pairs``: segmentation data into a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.data_commands import (
    LABEL_FRACTION,
    OUT,
    OVERWRITE,
    SEED,
    TEST,
    VAL,
    class_names_option,
    import_app,
    report_dataset,
)


@import_app.command("msd")
def import_msd_cmd(
    folder: Path = typer.Argument(..., help="A Decathlon / nnU-Net task folder (dataset.json, imagesTr, labelsTr)."),
    out: Path = OUT,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a Medical Segmentation Decathlon or nnU-Net task; every case is checked."""
    from medlens.cli.progress import progress_bars
    from medlens.data.importers import get_importer

    with progress_bars() as progress:
        dataset = get_importer("msd")(
            folder, out, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
            label_fraction=label_fraction, overwrite=overwrite,
            progress=progress,
        )  # fmt: skip
    report_dataset(dataset)


@import_app.command("pairs")
def import_pairs_cmd(
    images: Path = typer.Argument(..., help="Images: 2D pictures, 3D volumes, or one DICOM series folder per case."),
    masks: Path = typer.Argument(..., help="Masks named like the images (optionally with _mask, _seg, _label)."),
    out: Path = OUT,
    classes: str | None = typer.Option(
        None, "--classes", help="Class names, background first, comma-separated (default: from the mask values)."
    ),
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import image/mask pairs (2D or 3D) into a segmentation dataset."""
    from medlens.cli.progress import progress_bars
    from medlens.data.importers import get_importer

    with progress_bars() as progress:
        dataset = get_importer("pairs")(
            images,
            masks,
            out,
            classes=class_names_option(classes),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            label_fraction=label_fraction,
            overwrite=overwrite,
            progress=progress,
        )
    report_dataset(dataset)
