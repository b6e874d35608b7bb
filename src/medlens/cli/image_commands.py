"""``medlens info`` and ``medlens convert``: thin adapters over :mod:`medlens.io`."""

from __future__ import annotations

from pathlib import Path

import typer


def _is_dicom_collection(path: Path) -> bool:
    try:
        return path.is_dir() or path.name.upper() == "DICOMDIR"
    except OSError:  # a name the file system cannot hold: read_image says so
        return False


def info(
    path: Path = typer.Argument(..., help="An image file, a DICOM folder or a DICOMDIR."),
    series: str = typer.Option(None, "--series", help="Which series (key from the table) when there are several."),
) -> None:
    """Show geometry, modality, the series found, and warnings."""
    from rich.console import Console
    from rich.table import Table

    from medlens.io import find_series, read_image

    console = Console()
    found = find_series(path) if _is_dicom_collection(path) else []
    if found:
        table = Table(title=f"{len(found)} series in {path}")
        table.add_column("key", overflow="fold")  # the whole key: users copy it into --series
        for column in ("modality", "description", "images", "size", "plane"):
            table.add_column(column)
        for s in found:
            table.add_row(s.key, s.modality, s.description, str(s.frames), f"{s.rows}x{s.columns}", s.plane)
        console.print(table)
        if len(found) > 1 and series is None:
            console.print("Several series: choose one with --series KEY to see its geometry.")
            return
    image = read_image(path, series_uid=series)
    table = Table(title=str(path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("shape (C, ...)", " x ".join(str(s) for s in image.array.shape))
    table.add_row("dtype", str(image.array.dtype))
    table.add_row("kind", image.kind)
    table.add_row("spacing (mm)", ", ".join(f"{s:.4g}" for s in image.spacing))
    table.add_row("origin (RAS mm)", ", ".join(f"{s:.4g}" for s in image.origin))
    if image.orientation:
        table.add_row("orientation", image.orientation)
    table.add_row("direction (RAS)", "; ".join(", ".join(f"{v:+.3f}" for v in col) for col in image.direction.T))
    table.add_row("value range", f"{image.array.min():.6g} to {image.array.max():.6g}")
    for key in (
        "source_format",
        "modality",
        "series_description",
        "photometric_interpretation",
        "transfer_syntax",
        "rescale_slope",
        "rescale_intercept",
        "window_center",
        "window_width",
    ):
        if key in image.meta:
            table.add_row(key.replace("_", " "), str(image.meta[key]))
    if image.meta.get("skipped_files"):
        table.add_row("skipped files", ", ".join(image.meta["skipped_files"]))
    for warning in image.warnings:
        table.add_row("[yellow]warning[/yellow]", warning)
    console.print(table)


def convert(
    source: Path = typer.Argument(..., help="An image file, a DICOM folder or a DICOMDIR."),
    out: Path = typer.Argument(..., help="Output file: .nii.gz, .nii, .nrrd, .mha, .npz, .png or .dcm."),
    series: str = typer.Option(None, "--series", help="Which series when the input holds several."),
    window: str = typer.Option(None, "--window", help="Display window for .png/.dcm: a preset or CENTER,WIDTH."),
    slice_index: int = typer.Option(None, "--slice", help="Which slice of a volume to render to .png/.dcm."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it exists."),
) -> None:
    """Convert an image to another format (e.g. a DICOM series folder to .nii.gz)."""
    import logging

    from medlens.core.errors import InputError
    from medlens.core.outputs import check_output_file
    from medlens.io import read_image, write_image

    check_output_file(out, overwrite=overwrite, inputs=[("input", source)])  # never over (or into) the input
    image = read_image(source, series_uid=series)
    options: dict[str, object] = {}
    if window is not None:
        if "," in window:
            try:
                center, width = (float(v) for v in window.split(","))
            except ValueError as exc:
                raise InputError(out, f"--window {window!r} is not CENTER,WIDTH") from exc
            options["window"] = (center, width)
        else:
            options["window"] = window
    if slice_index is not None:
        options["slice_index"] = slice_index
    suffix = out.name.lower()
    if options and not suffix.endswith((".png", ".dcm")):
        raise InputError(out, "--window and --slice apply to .png and .dcm outputs only")
    try:
        write_image(image, out, **options)
    except ValueError as exc:  # an unknown window preset
        raise InputError(out, str(exc)) from exc
    log = logging.getLogger("medlens.cli")
    for warning in image.warnings:
        log.warning("%s: %s", source, warning)
    log.info("wrote %s (%s)", out, " x ".join(str(s) for s in image.array.shape))


def register(app: typer.Typer) -> None:
    """Add ``info`` and ``convert`` to the ``medlens`` command."""
    app.command("info")(info)
    app.command("convert")(convert)
