"""``medlens pacs run``, ``medlens listen`` and ``medlens import dicomweb``: a model in the hospital's PACS."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from medlens.cli.data_commands import LABEL_FRACTION, OUT, OVERWRITE, SEED, TEST, VAL, import_app, report_dataset
from medlens.core.errors import ConfigError

pacs_app = typer.Typer(
    help="Predict studies that live in a PACS (DICOMweb) and put the results back next to them.",
    no_args_is_help=True,
)
TOKEN = typer.Option(
    None, "--token", envvar="MEDLENS_DICOMWEB_TOKEN", help="Bearer token for the DICOMweb server (or set the variable)."
)
USER = typer.Option(
    None,
    "--user",
    envvar="MEDLENS_DICOMWEB_USER",
    help="USER:PASSWORD for HTTP basic authentication (or the variable).",
)


def quiet_network_logs() -> None:
    """pynetdicom and dicomweb-client log every message and request at INFO: keep them for --debug."""
    if logging.getLogger().level > logging.DEBUG:
        for name in ("pynetdicom", "dicomweb_client"):
            logging.getLogger(name).setLevel(logging.WARNING)


def seconds(text: str, option: str) -> float:
    """'10s', '2m', '0.5' (seconds) -> seconds."""
    from medlens.cli.model_commands import parse_duration

    bare = text.strip()
    try:
        return float(bare)
    except ValueError:
        pass
    try:
        return parse_duration(bare) * 60
    except ConfigError:
        raise ConfigError(option, f"{text!r} is not a duration (e.g. 10s, 2m)") from None


@pacs_app.command("run")
def pacs_run_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder or a bundle folder."),
    dicomweb: str = typer.Option(..., "--dicomweb", help="The DICOMweb service, e.g. http://pacs:8042/dicom-web."),
    study: str | None = typer.Option(None, "--study", help="One study, by StudyInstanceUID."),
    query: str | None = typer.Option(
        None, "--query", help='QIDO-RS filters, e.g. "ModalityInStudy=MR&StudyDate=20240101-".'
    ),
    push: bool = typer.Option(False, "--push", help="Store the results into each study (STOW-RS)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also keep the results and studies.json here."),
    token: str | None = TOKEN,
    user: str | None = USER,
    overwrite: bool = OVERWRITE,
) -> None:
    """Find studies (QIDO-RS), predict the series the model takes (WADO-RS), push the results (STOW-RS).

    The results (DICOM SEG for segmentation, a Secondary Capture picture otherwise, and an SR where available)
    carry the study's identifiers as received: this path does not de-identify.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.pacs.dicomweb import DicomWebServer
    from medlens.pacs.studies import run_dicomweb

    quiet_network_logs()
    server = DicomWebServer(dicomweb, token=token, user=user)
    with progress_bars() as progress:
        outcome = run_dicomweb(
            run_dir, server, study=study, query=query, push=push, out=out, overwrite=overwrite, progress=progress
        )
    console, errors = Console(), Console(stderr=True)
    for item in outcome.studies:
        if item.error:
            errors.print(f"study {item.study}: {item.error}", markup=False, highlight=False, soft_wrap=True)
            continue
        kinds = ", ".join(r["modality"] for r in item.results) or "no result objects"
        where = "stored in the study" if item.pushed else "kept"
        console.print(f"study {item.study}: series {item.series} -> {kinds} ({where})", markup=False, highlight=False)
    done = len(outcome.studies) - len(outcome.failed)
    console.print(f"{done} of {len(outcome.studies)} stud(ies) predicted" + (f"; results in {out}" if out else ""))
    if outcome.failed:
        raise typer.Exit(1)


@import_app.command("dicomweb")
def import_dicomweb_cmd(
    url: str = typer.Argument(..., help="The DICOMweb service, e.g. http://pacs:8042/dicom-web."),
    out: Path = OUT,
    query: str | None = typer.Option(None, "--query", help='QIDO-RS filters, e.g. "ModalityInStudy=MR".'),
    labels: str = typer.Option(
        "seg",
        "--labels",
        help="seg: labels from the DICOM SEG in each study (segmentation); or a CSV keyed by StudyInstanceUID or "
        "AccessionNumber (classification).",
    ),
    label_column: str = typer.Option("label", "--label-column", help="The CSV column holding each study's class."),
    deid: bool = typer.Option(False, "--deid", help="De-identify everything on the way in (PS3.15 Basic profile)."),
    key: Path | None = typer.Option(None, "--key", help="De-identification key file (default: MEDLENS_HOME's)."),
    token: str | None = TOKEN,
    user: str | None = USER,
    val_fraction: float = VAL,
    test_fraction: float = TEST,
    seed: int = SEED,
    label_fraction: float = LABEL_FRACTION,
    overwrite: bool = OVERWRITE,
) -> None:
    """Build a dataset from a PACS: images by series, labels from DICOM SEG or a CSV, optionally de-identified."""
    from medlens.cli.progress import progress_bars
    from medlens.data.importers import get_importer

    quiet_network_logs()
    if key is not None and not deid:
        raise ConfigError("--key", "is the de-identification key: give it with --deid")
    with progress_bars() as progress:
        dataset = get_importer("dicomweb")(
            url, out, query=query, labels=labels, label_column=label_column, deid=deid, key=key, token=token,
            user=user, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
            label_fraction=label_fraction, overwrite=overwrite,
            progress=progress,
        )  # fmt: skip
    report_dataset(dataset)


def listen_cmd(
    run_dir: Path | None = typer.Argument(None, help="A run folder or a bundle folder (not needed with --status)."),
    spool: Path = typer.Option(..., "--spool", help="Spool folder: received instances, results and the journal."),
    ae: str = typer.Option("MEDLENS", "--ae", help="The node's AE title."),
    port: int = typer.Option(11112, "--port", help="The DICOM port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on (0.0.0.0: every interface)."),
    forward: str | None = typer.Option(
        None, "--forward", help="Send the results to AE@HOST:PORT (default: keep them in SPOOL/out)."
    ),
    series_timeout: str = typer.Option(
        "10s",
        "--series-timeout",
        help="A series is complete after this long without a new instance (e.g. 10s), once the association "
        "that sent it has ended.",
    ),
    accept: str | None = typer.Option(
        None, "--accept", help="Modalities accepted, e.g. MR,CT (others are refused with a failure status)."
    ),
    calling_aes: Path | None = typer.Option(
        None, "--calling-aes", help="File of AE titles allowed to send (one a line); others are rejected."
    ),
    max_associations: int = typer.Option(10, "--max-associations", help="Simultaneous associations accepted."),
    send_tries: int = typer.Option(
        5, "--send-tries", help="Tries to send a series' results before it goes to SPOOL/failed."
    ),
    retry_wait: str = typer.Option(
        "2s", "--retry-wait", help="Wait before the second try to send; doubled for each further try."
    ),
    status: bool = typer.Option(False, "--status", help="Print the spool's queue (one line per series) and exit."),
) -> None:
    """A DICOM node: receive studies by C-STORE, predict each complete series, send the results on.

    Every instance is in the spool before the node answers; a journal makes every series finish exactly once,
    even after kill -9. Results carry the study's identifiers as received (no de-identification here).
    """
    from rich.console import Console

    if status:
        from medlens.pacs.node import status_lines

        lines = status_lines(spool)
        console = Console(soft_wrap=True)
        for line in lines:
            console.print(line, markup=False, highlight=False)
        console.print(f"{len(lines)} series in {spool}", markup=False, highlight=False)
        return
    if run_dir is None:
        raise ConfigError("RUN_DIR", "give the run or bundle folder of the model the node predicts with")
    from medlens.pacs.node import Node, NodeConfig, read_calling_aes
    from medlens.pacs.sender import Destination, check_ae_title
    from medlens.tasks.base import load_bundle

    if not 0 < port < 65536:
        raise ConfigError("--port", f"{port} is not in 1..65535")
    if max_associations < 1 or send_tries < 1:
        raise ConfigError("--max-associations" if max_associations < 1 else "--send-tries", "must be at least 1")
    config = NodeConfig(
        ae_title=check_ae_title(ae, "--ae"),
        host=host,
        port=port,
        spool=spool,
        forward=Destination.parse(forward) if forward else None,
        series_timeout=seconds(series_timeout, "--series-timeout"),
        accept=[m.strip().upper() for m in (accept or "").split(",") if m.strip()],
        calling_aes=read_calling_aes(calling_aes) if calling_aes else [],
        max_associations=max_associations,
        send_tries=send_tries,
        retry_wait=seconds(retry_wait, "--retry-wait"),
    )
    quiet_network_logs()
    node = Node(load_bundle(run_dir), config)
    node.start()
    try:
        node.wait()
    finally:
        node.stop()


def register(app: typer.Typer) -> None:
    app.add_typer(pacs_app, name="pacs")
    app.command("listen")(listen_cmd)
