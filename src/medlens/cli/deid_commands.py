"""``medlens deid``: argument parsing and a progress bar over ``medlens.deid.deidentify``; no logic here."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def deid(
    source: Path = typer.Argument(..., help="A DICOM file or a folder of them (searched recursively)."),
    out: Path = typer.Argument(
        ...,
        help="Output folder: same layout, names that carry no identifier. New, empty, or the OUT of an earlier "
        "run with the same key, profile and options (recorded in OUT/.medlens-deid.json); never inside the input.",
    ),
    key: Path | None = typer.Option(
        None,
        "--key",
        help="Key file; same key, same pseudonyms. Default: MEDLENS_HOME/deid/key. Not inside OUT or the quarantine.",
    ),
    profile: str = typer.Option("basic", "--profile", help="'basic' or a site profile YAML that extends it."),
    keep_dates_shifted: bool = typer.Option(
        False, "--keep-dates-shifted", help="Keep dates, shifted by a per-patient number of days."
    ),
    keep_patient_characteristics: bool = typer.Option(
        False, "--keep-patient-characteristics", help="Keep sex, age, size, weight and similar."
    ),
    keep_device_identity: bool = typer.Option(
        False, "--keep-device-identity", help="Keep device serial numbers, station names and similar."
    ),
    reject_burned_in: bool = typer.Option(
        False,
        "--reject-burned-in",
        help="Send images likely to carry burned-in text to the quarantine folder.",
    ),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Quarantine folder (default OUT-quarantine); outside OUT and the input, containing neither.",
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help="Write the original -> pseudonym mapping to this CSV at the end; outside the input, OUT and the "
        "quarantine, never the key file, never an existing file without --overwrite-mapping.",
    ),
    overwrite_mapping: bool = typer.Option(
        False, "--overwrite-mapping", help="Replace the --mapping file if it exists (never the key or an input)."
    ),
    workers: int = typer.Option(
        min(4, os.cpu_count() or 1), "--workers", "-j", help="Worker processes (1: in this process)."
    ),
) -> None:
    """De-identify DICOM files (PS3.15 Annex E Basic profile): each input written, quarantined or skipped.

    Every destination is checked before anything is written.

    Interrupted (Ctrl-C: exit 130, SIGTERM: 143), it leaves only whole files; the same command again resumes.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medlens.deid import deidentify

    console = Console(stderr=True)
    # Ctrl-C and SIGTERM go up to main(), which exits 130/143 with one line: the same command resumes.
    with Progress(
        TextColumn("de-identifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("deid", total=None)
        report = deidentify(
            source,
            out,
            key=key,
            profile=profile,
            keep_dates_shifted=keep_dates_shifted,
            keep_patient_characteristics=keep_patient_characteristics,
            keep_device_identity=keep_device_identity,
            reject_burned_in=reject_burned_in,
            quarantine=quarantine,
            mapping=mapping,
            overwrite_mapping=overwrite_mapping,
            workers=workers,
            on_file=lambda _result: progress.advance(task),
        )
    for source_file, reason in report.skipped_files:
        console.print(f"skipped      {source_file}: {reason}", markup=False, highlight=False, soft_wrap=True)
    for source_file, reason in report.quarantined_files:
        console.print(f"quarantined  {source_file}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if not reject_burned_in:
        for source_file, reason in report.burned_in_files:
            console.print(f"check pixels {source_file}: {reason}", markup=False, highlight=False, soft_wrap=True)
    typer.echo(report.summary())
    typer.echo(f"output: {report.out}" + (f"; quarantine: {report.quarantine}" if report.quarantined else ""))
    if report.mapping_file:
        typer.echo(f"mapping: {report.mapping_file} (keep it apart from the output)")


def register(app: typer.Typer) -> None:
    app.command("deid")(deid)
