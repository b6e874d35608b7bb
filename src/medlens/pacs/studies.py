"""``medlens pacs run``: find studies on a DICOMweb server, predict the series each model takes, push the results.

For each study found by QIDO-RS (``--study`` or ``--query``): list its series, choose the one the bundle's rules
take (logged, with why the others were passed over), retrieve it by WADO-RS into a temporary folder, predict,
write the result objects (:mod:`medlens.pacs.results`), and with ``push`` store them into the same study by
STOW-RS. With ``out``, the results and a ``studies.json`` account of every study are kept there.

The results carry the study's identifiers as received (no de-identification on this path).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from medlens.core.errors import ConfigError, MedlensError, RemoteError
from medlens.core.outputs import output_folder, write_json
from medlens.core.progress import ProgressFn, report
from medlens.pacs.dicomweb import DicomWebServer, parse_query
from medlens.pacs.rules import choose_series, rules_for
from medlens.pacs.series import predict_series

log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    """What became of one study: the series chosen, the result objects, whether they were pushed, or an error."""

    study: str
    series: str | None = None
    passed_over: dict[str, str] = field(default_factory=dict)
    prediction: dict[str, Any] | None = None
    results: list[dict[str, str]] = field(default_factory=list)
    pushed: bool = False
    error: str | None = None


@dataclass
class PacsRun:
    """Every study's outcome, in the order found."""

    studies: list[StudyOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[StudyOutcome]:
        return [s for s in self.studies if s.error]


def run_dicomweb(
    run: str | Path,
    server: DicomWebServer,
    *,
    study: str | None = None,
    query: str | None = None,
    push: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> PacsRun:
    """Predict the studies a DICOMweb server finds, and push the results back.

    Args:
        run: a run or bundle folder.
        server: the DICOMweb server.
        study: one StudyInstanceUID.
        query: QIDO-RS filters, e.g. ``ModalityInStudy=MR&StudyDate=20240101-``.
        push: store the results into each study (STOW-RS).
        out: a folder to create for the result objects and ``studies.json``.
        overwrite: replace an existing ``out`` that medlens made.
        progress: called as ``progress("studies", done, total)``.

    Raises:
        ConfigError: neither ``study`` nor ``query``, or neither ``push`` nor ``out``.
        RemoteError: the server cannot be searched; a study that fails later is recorded, the others go on.
    """
    from medlens.tasks.base import load_bundle

    if not study and not query:
        raise ConfigError("--study", "give --study UID or --query FILTERS (the studies to predict)")
    if not push and out is None:
        raise ConfigError("--push", "the results would go nowhere: give --push (into the PACS), --out DIR, or both")
    filters = parse_query(query)
    bundle = load_bundle(run)
    rules = rules_for(bundle)
    uids = server.studies(filters, study)
    if study and not uids:
        raise RemoteError(server.url, f"no study {study}")
    log.info("%d stud(ies) found", len(uids))
    outcome = PacsRun()
    with tempfile.TemporaryDirectory(prefix="medlens-pacs-") as scratch:
        work = Path(scratch)
        for i, uid in enumerate(uids):
            outcome.studies.append(_study(server, bundle, rules, uid, work / f"{i:05d}", push))
            report(progress, "studies", i + 1, len(uids))
        if out is not None:
            with output_folder(out, kind="pacs-results", overwrite=overwrite) as tmp:
                for i, item in enumerate(outcome.studies):
                    kept = work / f"{i:05d}" / "results"
                    if kept.is_dir() and item.results:
                        shutil.copytree(kept, tmp / f"{i:05d}")
                        for entry in item.results:
                            entry["file"] = f"{i:05d}/{entry['file']}"
                write_json(tmp / "studies.json", [vars(s) for s in outcome.studies])
    return outcome


def _study(server: DicomWebServer, bundle: Any, rules: Any, uid: str, work: Path, push: bool) -> StudyOutcome:
    item = StudyOutcome(uid)
    try:
        chosen, item.passed_over = choose_series(rules, server.series(uid))
        if chosen is None:
            item.error = "no series the model takes: " + "; ".join(f"{k}: {v}" for k, v in item.passed_over.items())
            log.warning("study %s: %s", uid, item.error)
            return item
        item.series = chosen.series_uid
        files = server.retrieve(uid, chosen.series_uid, work / "series")
        done = predict_series(bundle, files, work / "results", rules)
        if done.prediction is None:  # the instances say otherwise than the search did
            item.error = f"series {chosen.series_uid} passed over: {done.passed_over}"
            return item
        item.prediction = done.prediction.to_dict()
        for path in done.results:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            item.results.append(
                {
                    "file": path.name,
                    "modality": str(ds.Modality),
                    "sop_instance_uid": str(ds.SOPInstanceUID),
                    "series_instance_uid": str(ds.SeriesInstanceUID),
                    "series_description": str(ds.get("SeriesDescription", "")),
                }
            )
        if push and done.results:
            server.store(done.results, uid)
            item.pushed = True
            log.info("study %s: %d result object(s) stored", uid, len(done.results))
    except MedlensError as exc:
        item.error = str(exc)
        log.warning("study %s: %s", uid, exc)
    return item
