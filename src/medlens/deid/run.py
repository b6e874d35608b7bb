"""``deidentify``: the public entry point that walks an input folder and accounts for every file."""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import atomic_file
from medlens.core.settings import get_settings
from medlens.deid.profile import Options, load_profile
from medlens.deid.pseudonyms import load_key
from medlens.deid.report import DeidReport, FileResult
from medlens.deid.worker import FileJob, JobConfig

log = logging.getLogger(__name__)
_job: FileJob | None = None  # one per worker process


def _init_worker(config: JobConfig) -> None:
    global _job
    _job = FileJob(config)


def _run_in_worker(task: tuple[str, str]) -> FileResult:
    if _job is None:  # pragma: no cover - the pool initializer always runs first
        raise RuntimeError("worker used before initialisation")
    return _job(task)


def _inputs(source: Path) -> Iterator[tuple[str, str]]:
    """(absolute path, path relative to the input root) of every file, in a stable order."""
    if source.is_file():
        yield str(source), source.name
        return
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            yield str(path), path.relative_to(source).as_posix()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _remove_partials(folder: Path) -> None:
    """Temporary files left by a run that was killed mid-write (atomic writes never expose them)."""
    if folder.is_dir():
        for stale in folder.rglob(".*.partial"):
            stale.unlink(missing_ok=True)


def deidentify(
    source: str | Path,
    out: str | Path,
    *,
    key: str | Path | None = None,
    profile: str | Path = "basic",
    keep_dates_shifted: bool = False,
    keep_patient_characteristics: bool = False,
    keep_device_identity: bool = False,
    reject_burned_in: bool = False,
    quarantine: str | Path | None = None,
    mapping: str | Path | None = None,
    workers: int = 1,
    on_file: Callable[[FileResult], None] | None = None,
) -> DeidReport:
    """De-identify every DICOM file under ``source`` into ``out`` (PS3.15 Annex E Basic profile).

    The input is never modified. Each input file is written to ``out`` (same folder layout, names that carry
    no identifier), quarantined, or skipped with a reason. Re-running after an interruption finishes the rest.

    Args:
        source: a DICOM file or a folder of them (searched recursively).
        out: the output folder; must not be inside ``source``.
        key: a key file (at least 16 bytes); pseudonyms are consistent for one key. Default: a key created
            once in ``MEDLENS_HOME/deid/key``.
        profile: ``basic`` or a site profile YAML file that extends it.
        keep_dates_shifted: Retain Longitudinal Temporal Information, Modified Dates option.
        keep_patient_characteristics: Retain Patient Characteristics option.
        keep_device_identity: Retain Device Identity option.
        reject_burned_in: send files likely to carry burned-in text to ``quarantine`` instead of ``out``.
        quarantine: the quarantine folder (default: ``<out>-quarantine`` beside ``out``).
        mapping: write original -> pseudonym pairs to this CSV file (never inside ``out``).
        workers: processes to use; 1 runs in this process.
        on_file: called with each file's result (progress bars).

    Returns:
        The report: counts and the skipped, quarantined and flagged files.

    Example:
        >>> report = deidentify("study/", "study-deid/", key="site.key")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
    """
    started = time.perf_counter()
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.exists():
        raise InputError(source, "input not found")
    if _inside(out, source) or (source.is_dir() and _inside(source, out)):
        raise InputError(out, "the output folder must not be inside the input, nor contain it")
    quarantine_dir = Path(quarantine).resolve() if quarantine else out.with_name(out.name + "-quarantine")
    mapping_path = Path(mapping).resolve() if mapping else None
    if mapping_path and (_inside(mapping_path, out) or _inside(mapping_path, quarantine_dir)):
        raise InputError(mapping_path, "the mapping file must not be written into the output or quarantine")
    if workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {workers}")
    options = Options(keep_dates_shifted, keep_patient_characteristics, keep_device_identity)
    load_profile(profile, options)  # validate once, here, before any worker starts
    key_bytes, key_path = load_key(key, default_dir=get_settings().home / "deid")
    log.info("de-identifying %s -> %s (profile %s, key %s)", source, out, profile, key_path)
    out.mkdir(parents=True, exist_ok=True)
    _remove_partials(out)
    _remove_partials(quarantine_dir)

    config = JobConfig(
        profile=str(profile),
        options=options,
        key=key_bytes,
        out=str(out),
        quarantine=str(quarantine_dir),
        reject_burned_in=reject_burned_in,
        record_mapping=mapping_path is not None,
    )
    report = DeidReport(out=str(out), quarantine=str(quarantine_dir))
    pairs: dict[tuple[str, str], str] = {}

    def collect(result: FileResult) -> None:
        report.add(result)
        for kind, original, pseudonym in result.mapping:
            pairs[(kind, original)] = pseudonym
        result.mapping = []
        if on_file is not None:
            on_file(result)

    if workers == 1:
        job = FileJob(config)
        for task in _inputs(source):
            collect(job(task))
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process running progress threads
        with context.Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
            for result in pool.imap_unordered(_run_in_worker, _inputs(source), chunksize=8):
                collect(result)
    if mapping_path is not None:
        with atomic_file(mapping_path, "w") as handle:
            writer = csv.writer(handle)  # type: ignore[arg-type]
            writer.writerow(["kind", "original", "pseudonym"])
            writer.writerows([kind, original, new] for (kind, original), new in sorted(pairs.items()))
        report.mapping_file = str(mapping_path)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report
