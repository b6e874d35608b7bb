"""``medlens import voc|coco|yolo``: detection data into a medlens dataset (boxes per image as JSON)."""

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

CLASSES = typer.Option(
    None, "--classes", help="Class names in label order, comma-separated; objects of other names are reported."
)


@import_app.command("voc")
def import_voc_cmd(
    folder: Path = typer.Argument(..., help="Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/)."),
    out: Path = OUT,
    classes: str | None = CLASSES,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import Pascal VOC boxes, keeping the ImageSets train/val/test lists when present."""
    from medlens.data.importers import get_importer

    dataset = get_importer("voc")(
        folder,
        out,
        classes=class_names_option(classes),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
        overwrite=overwrite,
    )
    report_dataset(dataset)


@import_app.command("coco")
def import_coco_cmd(
    annotations: Path = typer.Argument(..., help="COCO annotations JSON (images, annotations, categories)."),
    images: Path = typer.Argument(..., help="Folder the images' file_name entries are relative to."),
    out: Path = OUT,
    classes: str | None = CLASSES,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import COCO-format boxes (crowd regions left out), split by a seeded fraction."""
    from medlens.data.importers import get_importer

    dataset = get_importer("coco")(
        annotations,
        images,
        out,
        classes=class_names_option(classes),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
        overwrite=overwrite,
    )
    report_dataset(dataset)


@import_app.command("yolo")
def import_yolo_cmd(
    folder: Path = typer.Argument(..., help="YOLO folder: images/[split/]*.jpg, labels/[split/]*.txt, data.yaml."),
    out: Path = OUT,
    classes: str | None = CLASSES,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import YOLO text labels, keeping train/val/test folders when present."""
    from medlens.data.importers import get_importer

    dataset = get_importer("yolo")(
        folder,
        out,
        classes=class_names_option(classes),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
        overwrite=overwrite,
    )
    report_dataset(dataset)
