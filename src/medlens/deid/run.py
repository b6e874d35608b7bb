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
from medlens.deid import interrupts
from medlens.deid.files import WriteFailed
from medlens.deid.outputs import RunSettings, check_destinations, claim_output
from medlens.deid.profile import Options, load_profile
from medlens.deid.pseudonyms import key_location, load_key
from medlens.deid.report import DeidReport, FileResult
from medlens.deid.worker import FileJob, JobConfig

log = logging.getLogger(__name__)
_job: FileJob | None = None  # one per worker process
_stop = interrupts.WorkerStop()  # one per worker process


def _init_worker(config: JobConfig) -> None:
    global _job
    _stop.install()
    _job = FileJob(config)


def _run_in_worker(task: tuple[str, str]) -> FileResult:
    if _job is None:  # pragma: no cover - the pool initializer always runs first
        raise RuntimeError("worker used before initialisation")
    with _stop.file():
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


def _remove_partials(folder: Path) -> None:
    """Temporary files of writes cut short (atomic writes never expose them under the final name)."""
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
    overwrite_mapping: bool = False,
    workers: int = 1,
    on_file: Callable[[FileResult], None] | None = None,
) -> DeidReport:
    """De-identify every DICOM file under ``source`` into ``out`` (PS3.15 Annex E Basic profile).

    The input is never modified. Each input file is written to ``out`` (same folder layout, names that carry
    no identifier), quarantined, or skipped with a reason. Every destination is checked before anything is
    written (``medlens.deid.outputs``). ``out`` keeps the run's settings in ``.medlens-deid.json``; running
    again into the same ``out`` with the same settings finishes what an interrupted run left (files are
    written whole or not at all), and with another key, profile or option it is refused.

    Args:
        source: a DICOM file or a folder of them (searched recursively).
        out: the output folder: new, empty, or the ``out`` of an earlier run with the same settings; not
            inside ``source``, nor containing it.
        key: a key file (at least 16 bytes); pseudonyms are consistent for one key. Default: a key created
            once in ``MEDLENS_HOME/deid/key``. It must not lie inside ``out`` or the quarantine.
        profile: ``basic`` or a site profile YAML file that extends it.
        keep_dates_shifted: Retain Longitudinal Temporal Information, Modified Dates option.
        keep_patient_characteristics: Retain Patient Characteristics option.
        keep_device_identity: Retain Device Identity option.
        reject_burned_in: send files likely to carry burned-in text to ``quarantine`` instead of ``out``.
        quarantine: the quarantine folder (default: ``<out>-quarantine`` beside ``out``); outside ``out`` and
            ``source``, containing neither.
        mapping: write original -> pseudonym pairs to this CSV file, at the end of the run; outside ``source``,
            ``out`` and the quarantine, and never the key file.
        overwrite_mapping: replace ``mapping`` if it exists (otherwise an existing file is an error).
        workers: processes to use; 1 runs in this process.
        on_file: called with each file's result (progress bars).

    Returns:
        The report: counts and the skipped, quarantined and flagged files.

    Raises:
        InputError: a destination breaks a rule above, ``out`` holds another run's settings, or an output
            cannot be written (naming the output, never reported as an unreadable input).

    Example:
        >>> report = deidentify("study/", "study-deid/", key="site.key")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
    """
    started = time.perf_counter()
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.exists():
        raise InputError(source, "input not found")
    if workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {workers}")
    quarantine_dir = Path(quarantine).resolve() if quarantine else out.with_name(out.name + "-quarantine")
    mapping_path = Path(mapping).resolve() if mapping else None
    key_dir = get_settings().home / "deid"
    check_destinations(
        source, out, quarantine_dir, mapping_path, key_location(key, default_dir=key_dir), overwrite_mapping
    )
    options = Options(keep_dates_shifted, keep_patient_characteristics, keep_device_identity)
    load_profile(profile, options)  # validate once, here, before any worker starts
    key_bytes, key_path = load_key(key, default_dir=key_dir)
    resumes = claim_output(out, RunSettings.of(key_bytes, profile, options, reject_burned_in))
    log.info(
        "de-identifying %s -> %s (profile %s, key %s%s)",
        source,
        out,
        profile,
        key_path,
        "; resuming an earlier run" if resumes else "",
    )
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

    try:
        with interrupts.noted() as stop_if_interrupted:
            if workers == 1:
                job = FileJob(config)
                for task in _inputs(source):
                    collect(job(task))
                    stop_if_interrupted()
            else:
                context = multiprocessing.get_context("spawn")  # no fork of a process running progress threads
                with interrupts.ignored_by_new_processes():
                    pool = context.Pool(workers, initializer=_init_worker, initargs=(config,))
                with pool:  # on any exception, Ctrl-C included, terminate() stops the workers (see WorkerStop)
                    for result in pool.imap_unordered(_run_in_worker, _inputs(source), chunksize=8):
                        collect(result)
                        stop_if_interrupted()
    except BaseException as exc:
        # Every writer has stopped (the pool is terminated and joined). A signal that fell between a
        # temporary file's creation and the code guarding it (inside atomic_file) can still leave one.
        _remove_partials(out)
        _remove_partials(quarantine_dir)
        if isinstance(exc, WriteFailed):
            target, problem = exc.args
            raise InputError(target, f"cannot write this output file: {problem}") from None
        raise
    if mapping_path is not None:
        try:
            with atomic_file(mapping_path, "w") as handle:
                writer = csv.writer(handle)  # type: ignore[arg-type]
                writer.writerow(["kind", "original", "pseudonym"])
                writer.writerows([kind, original, new] for (kind, original), new in sorted(pairs.items()))
        except OSError as exc:
            raise InputError(mapping_path, f"cannot write the mapping file: {exc.strerror or exc}") from exc
        report.mapping_file = str(mapping_path)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report
