"""Predict tens of thousands of inputs on Ray: ``medlens predict RUN INPUTS --out OUT --ray [ADDRESS]``.

Ray Data streams the inputs (files, folders, and lists: text files with one path a line) through a pool of actors,
each holding the bundle once; every actor writes what the single-process :func:`medlens.workflows.prediction.predict`
writes for an input, through the same :func:`~medlens.workflows.prediction.write_prediction`, as it goes. The output
folder is therefore written in place rather than moved into place at the end, and it is resumable:

    OUT/
      .medlens, <name>.json, <name>.png ...   # as single-process predict
      predictions.csv, skipped.csv            # written when every input is done (input order)
      .journal/job.json                       # the bundle and options this folder is for
      .journal/<name>.json                    # one per finished input: its row and prediction

An input's files are written into ``.journal/staging/`` and moved into place, and its journal record is written
last: a record means the input is done, so a re-run (the same command) predicts only the inputs without one, and an
actor that dies (its process killed, its node lost) is restarted by Ray and its batch retried; whatever it had moved
into place is replaced by the same files, so every input ends with its outputs exactly once.

Names (``<name>``) are given to all inputs up front, in input order (:func:`medlens.core.outputs.unique_stem`), so a
resumed run names every input as the first one did. Single-process ``predict`` names the inputs it could predict, so
the two name differently only when two inputs share a file name and one before them was skipped.
The task's outputs about all predictions together (``finish_predictions``: detection's COCO results, the sequence
task's attention table) hold the predictions made by the last session: after a resumed run, they miss the inputs
finished by earlier sessions (the per-input files and ``predictions.csv`` hold every input).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import InputError, MedlensError
from medlens.core.outputs import check_output_folder, unique_stem, write_json, write_marker
from medlens.core.prediction import Prediction
from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.tasks.base import load_bundle
from medlens.workflows.prediction import (
    OutputChoices,
    PredictionRun,
    expand_inputs,
    finish_folder,
    output_choices,
    skip_reason,
    write_prediction,
)

log = logging.getLogger(__name__)

JOURNAL = ".journal"
JOB_FILE = "job.json"
LIST_SUFFIXES = (".txt", ".lst", ".list")


def predict_on_ray(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    address: str | None = None,
    actors: int | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    **options: Any,
) -> PredictionRun:
    """Predict every input on Ray, writing as it goes; a re-run of the same command finishes what is missing.

    Args:
        run_dir: a run folder or a bundle folder (on a path every Ray node reads).
        inputs: image files, folders, and lists (``.txt``: one path a line, relative to the list's folder; ``#``
            starts a comment).
        out: the output folder: created, or continued when it holds the journal of the same bundle and options.
        address: a Ray cluster (``HOST:PORT``); None or ``"local"``: a local Ray on 127.0.0.1 for this call.
        actors: predicting actors (one CPU each); default: every CPU of the cluster.
        overwrite: start again in an existing output folder that medlens made (it is replaced).
        progress: called as inputs finish (stage ``predicting``; inputs done before count as done).
        options: what :func:`medlens.workflows.prediction.predict` takes of how each input is predicted and what
            is written (``tta``, ``dicom_seg``, ``pictures``, ``nonfinite``, ``report``, ``dicom_sr``,
            ``languages``, ``explain``), checked by :func:`~medlens.workflows.prediction.output_choices`.

    Raises:
        InputError: for a missing input or list entry, an output folder that is not this job's, or when nothing
            could be predicted.

    Example:
        >>> from medlens.workflows.batch_prediction import predict_on_ray
        >>> run = predict_on_ray("runs/pneumonia", ["archive.txt"], "predictions")  # doctest: +SKIP
    """
    choices = output_choices(**options)
    bundle = load_bundle(run_dir)
    bundle.networks()  # a bundle whose weights cannot be loaded fails here, not in every actor
    paths = expand_inputs(listed_inputs(inputs), bundle.plan.spatial_dims)
    used: set[str] = set()
    stems = [unique_stem(path, used) for path in paths]
    out = Path(out)
    guarded = [("input", Path(p)) for p in inputs] + [("run folder", Path(run_dir))]
    job = {"bundle": str(bundle.root.resolve()), "options": json.loads(json.dumps(asdict(choices)))}
    journal = _open_folder(out, job, guarded, overwrite)
    pending = [(p, s) for p, s in zip(paths, stems, strict=True) if not (journal / f"{s}.json").is_file()]
    if len(pending) < len(paths):
        log.info("%s: %d of %d inputs already done; predicting the other %d", out, len(paths) - len(pending),
                 len(paths), len(pending))  # fmt: skip
    report_progress(progress, "predicting", len(paths) - len(pending), len(paths))
    made, skipped = _run(run_dir, out, choices, pending, address, actors, bundle.task.batch_size, progress, len(paths))
    result = PredictionRun(out, skipped=skipped)
    rows = []
    for stem in stems:
        record = _read_record(journal / f"{stem}.json")
        if record is not None:
            rows.append(record["row"])
            result.predictions.append(record["prediction"])
    shutil.rmtree(journal / "staging", ignore_errors=True)  # what an actor that died had not moved into place
    finish_folder(bundle, out, made, rows, skipped, paths)
    if not skipped:
        (out / "skipped.csv").unlink(missing_ok=True)  # from an earlier session, whose skipped inputs are now done
    return result


def listed_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """``inputs`` with every list file (``.txt``, ``.lst``, ``.list``) replaced by the paths it holds.

    Raises:
        InputError: naming the list and the line of a path that does not exist.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if not (item.is_file() and item.suffix.lower() in LIST_SUFFIXES):
            found.append(item)
            continue
        try:
            lines = item.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(item, f"cannot be read as a list of paths ({exc})") from None
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            path = Path(text) if Path(text).is_absolute() else item.parent / text
            if not path.exists():
                raise InputError(item, f"line {number}: {text} does not exist")
            found.append(path)
    if not found:
        raise InputError(Path(str(inputs[0])), "no inputs (the lists are empty)")
    return found


def _open_folder(out: Path, job: dict[str, Any], guarded: list[tuple[str, Path]], overwrite: bool) -> Path:
    """The journal of ``out``: continued when it is this job's, else a new folder (refused when one exists,
    unless ``overwrite`` and medlens made it)."""
    journal = out / JOURNAL
    recorded = _read_record(journal / JOB_FILE)
    if recorded is not None and not overwrite:
        check_output_folder(out, overwrite=True, inputs=guarded)  # still clear of the inputs, and medlens's own
        if recorded != job:
            raise InputError(
                journal / JOB_FILE,
                "this folder holds predictions of another model or with other options; choose another --out, or "
                "--overwrite to start again",
            )
        return journal
    check_output_folder(out, overwrite=overwrite, inputs=guarded)
    if out.exists() and any(out.iterdir()):  # checked above: the user asked, and medlens made it
        shutil.rmtree(out)
    journal.mkdir(parents=True, exist_ok=True)
    write_marker(out, "predictions")
    write_json(journal / JOB_FILE, job)
    return journal


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, "not a readable journal record; remove it to predict that input again") from None
    if not isinstance(record, dict):
        raise InputError(path, "not a journal record (a JSON mapping); remove it to predict that input again")
    return record


def _run(
    run_dir: str | Path,
    out: Path,
    choices: OutputChoices,
    pending: list[tuple[Path, str]],
    address: str | None,
    actors: int | None,
    batch_size: int,
    progress: ProgressFn | None,
    total: int,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict ``pending`` on Ray; return the predictions made and the inputs skipped, with their reasons."""
    made: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    if not pending:
        return made, skipped
    from medlens.cluster.session import ray_session

    with ray_session(address) as ray:
        import ray.data

        size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        batch = max(1, batch_size)
        blocks = min(len(pending), max(size * 4, math.ceil(len(pending) / (batch * 4))))  # small blocks: streaming
        items = [{"path": str(p), "stem": s} for p, s in pending]
        predicted = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            Predictor,
            fn_constructor_kwargs={"run_dir": str(Path(run_dir).resolve()), "out": str(out.resolve()),
                                   "choices": choices},
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=1,  # Ray Data's actors are restarted when they die, and their batches retried (its defaults)
        )  # fmt: skip
        done = total - len(pending)
        for result in predicted.iter_batches(batch_size=None, batch_format="numpy"):
            for source, reason, prediction in zip(result["path"], result["reason"], result["prediction"], strict=True):
                if reason:
                    skipped.append((str(source), str(reason)))
                    log.warning("skipped %s: %s", source, reason)
                elif prediction is not None:
                    made.append(prediction)
            done += len(result["path"])
            report_progress(progress, "predicting", done, total)
    return made, skipped


class Predictor:
    """A Ray Data actor: loads the bundle once, predicts batches of ``{"path", "stem"}`` rows and writes each
    input's files and journal record (see the module's docstring for the order that makes it resumable)."""

    def __init__(self, run_dir: str, out: str, choices: OutputChoices) -> None:
        self.bundle = load_bundle(run_dir)
        self.bundle.networks()
        self.out = Path(out)
        self.journal = self.out / JOURNAL
        self.choices = choices

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = [str(p) for p in batch["path"]]
        stems = dict(zip(sources, (str(s) for s in batch["stem"]), strict=True))
        reasons: dict[str, str] = {}
        made: dict[str, Prediction] = {}

        def skip(item: Any, error: MedlensError) -> None:
            reasons[str(item)] = skip_reason(item, error)

        # an input whose record exists was finished by an earlier try of this batch (its actor died after it)
        todo = [s for s in sources if not (self.journal / f"{stems[s]}.json").is_file()]
        choices = self.choices
        for prediction in self.bundle.predict_many(todo, tta=choices.tta, nonfinite=choices.nonfinite, on_error=skip):
            try:
                self._write(prediction, stems[prediction.source])
            except MedlensError as exc:
                skip(prediction.source, exc)
                continue
            made[prediction.source] = prediction
        return {
            "path": np.array(sources, dtype=object),
            "reason": np.array([reasons.get(s, "") for s in sources], dtype=object),
            "prediction": np.array([made.get(s) for s in sources] + [None], dtype=object)[:-1],  # a 1-D object array
        }

    def _write(self, prediction: Prediction, stem: str) -> None:
        staging = self.journal / "staging" / f"{stem}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        files = write_prediction(self.bundle, prediction, staging, stem, self.choices)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = self.out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        shutil.rmtree(staging, ignore_errors=True)
        record = {"row": prediction.table_row(), "prediction": prediction.to_dict() | {"files": files}}
        write_json(self.journal / f"{stem}.json", record)  # last: the input is done
