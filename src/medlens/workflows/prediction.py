"""Predict files and folders with a bundle: ``medlens.predict(RUN, inputs, out)``.

Every input goes through ``bundle.predict`` (so a prediction means the same here, in evaluation and in the
service). The output folder holds one ``<name>.json`` per input (the prediction's ``to_dict()``) with the task's
files beside it (masks, overlays, DICOM SEG), ``predictions.csv`` (one row per input), and ``skipped.csv`` with
the reason for each input that could not be predicted. One bad file does not stop the others. With ``report``,
``reports/<name>.json`` and a text per language beside it (:mod:`medlens.reports.clinical`), and with ``dicom_sr``
a DICOM SR (``reports/<name>.sr.dcm``) for DICOM input, referencing the DICOM SEG of a segmentation (written then
without ``dicom_seg`` being asked). With ``explain``, the bundle's default explanation of each input beside it (an
overlay PNG, the map, and for DICOM input a Secondary Capture), which the report names.

:func:`write_extras` is the one place these files that need the bundle are made; ``medlens serve`` calls it too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.core.errors import ConfigError, InputError, MedlensError
from medlens.core.image import Image
from medlens.core.outputs import output_folder, unique_stem, write_table
from medlens.core.prediction import Prediction, SaveOptions
from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.data.sources import is_image_file
from medlens.models.bundle import Bundle, NonFinite, read_input
from medlens.reports.clinical import DEFAULT_LANGUAGES, parse_languages, write_reports
from medlens.tasks.base import load_bundle

log = logging.getLogger(__name__)


@dataclass
class PredictionRun:
    """What ``predict`` did: the predictions (as written) and each skipped input with its reason."""

    out: Path
    predictions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(inputs: Sequence[str | Path], spatial_dims: int = 2) -> list[Path]:
    """Files as given; folders expanded to their image files, except that for a 3D model a folder holding
    one multi-file DICOM series stays one input (the volume)."""
    found: list[Path] = []
    for item in map(Path, inputs):
        try:
            exists = item.exists()
        except OSError as exc:  # a name the file system cannot hold (too long, ...)
            raise InputError(item, f"cannot be read ({exc.strerror})") from None
        if not exists:
            raise InputError(item, "no such file or folder")
        if item.is_file():
            found.append(item)
            continue
        files = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise InputError(item, "no image files in this folder")
        dicom = [p for p in files if p.suffix.lower() in {".dcm", ".dicom", ""}]
        if spatial_dims == 3 and dicom and len(dicom) == len(files) and _is_volume_folder(item):
            found.append(item)  # a series folder: one volume
        else:
            found.extend(files)
    if not found:
        raise InputError(Path(str(inputs[0])), "no image files found")
    return found


def _is_volume_folder(folder: Path) -> bool:
    from medlens.io import find_series

    try:
        series = find_series(folder)
    except MedlensError:
        return True  # a series with a broken file is still one input: reading it reports the file (then skipped)
    return len(series) == 1 and len(series[0].files) > 1


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    tta: bool = False,
    dicom_seg: bool = False,
    pictures: bool = True,
    nonfinite: NonFinite = "refuse",
    report: bool = False,
    dicom_sr: bool = False,
    languages: Sequence[str] | None = None,
    explain: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> PredictionRun:
    """Predict every input; write one JSON per input, the task's files, ``predictions.csv`` and ``skipped.csv``.

    Args:
        run_dir: a run folder or a bundle folder.
        inputs: image files and folders (PNG, JPEG, TIFF, DICOM files and series, NIfTI, NRRD, MHA, npz).
        out: the folder to create (refused when it is, holds or lies inside an input or the run).
        tta: test-time augmentation where the task has it (segmentation: mirroring).
        dicom_seg: segmentation of DICOM input: also write a DICOM SEG.
        pictures: write overlay pictures.
        nonfinite: ``refuse`` inputs with NaN or infinite pixels (skipped with the reason), or ``clean`` them
            (replaced by the image's own range, flagged in the prediction).
        report: write a clinical report per input: ``reports/<name>.json`` and ``reports/<name>.<lang>.txt``.
        dicom_sr: also write a DICOM Comprehensive 3D SR per DICOM input (implies ``report``; a segmentation's
            DICOM SEG is written too, for the SR to reference).
        languages: the texts' languages (default English and Chinese; see
            :func:`medlens.reports.clinical.known_languages`).
        explain: also explain each input with the bundle's default method (chosen on validation at training).
        overwrite: replace an existing output folder that medlens made.
        progress: called per input.

    Raises:
        InputError: when nothing could be predicted (every input skipped), or for a missing input.

    Example:
        >>> import medlens
        >>> run = medlens.predict("runs/pneumonia", ["xray.png"], "predictions")  # doctest: +SKIP
        >>> run.predictions[0]["label"]  # doctest: +SKIP
        'pneumonia'
    """
    choices = output_choices(
        tta=tta, dicom_seg=dicom_seg, pictures=pictures, nonfinite=nonfinite, report=report, dicom_sr=dicom_sr,
        languages=languages, explain=explain,
    )  # fmt: skip
    bundle = load_bundle(run_dir)
    bundle.networks()  # a bundle whose weights cannot be loaded fails here, not as a skip of every input
    paths = expand_inputs(inputs, bundle.plan.spatial_dims)
    guarded = [("input", Path(p)) for p in inputs] + [("run folder", Path(run_dir))]
    result = PredictionRun(Path(out))
    with output_folder(out, kind="predictions", overwrite=overwrite, inputs=guarded) as tmp:
        made: list[Prediction] = []
        rows: list[dict[str, Any]] = []
        used: set[str] = set()

        def skip(item: Any, error: MedlensError) -> None:
            reason = skip_reason(item, error)
            result.skipped.append((str(item), reason))
            log.warning("skipped %s: %s", item, reason)

        report_progress(progress, "predicting", 0, len(paths))
        for prediction in bundle.predict_many(paths, tta=tta, nonfinite=nonfinite, on_error=skip):
            try:
                stem = unique_stem(Path(prediction.source), used)
                files = write_prediction(bundle, prediction, tmp, stem, choices)
            except MedlensError as exc:
                skip(prediction.source, exc)
                continue
            made.append(prediction)
            rows.append(prediction.table_row())
            result.predictions.append(prediction.to_dict() | {"files": files})
            report_progress(progress, "predicting", len(made) + len(result.skipped), len(paths))
        finish_folder(bundle, tmp, made, rows, result.skipped, paths)
    return result


@dataclass(frozen=True)
class OutputChoices:
    """How each input is predicted and what is written for it (the options of :func:`predict`)."""

    save: SaveOptions
    tta: bool = False
    nonfinite: NonFinite = "refuse"
    report: bool = False
    dicom_sr: bool = False
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    explain: bool = False


def output_choices(
    *,
    tta: bool = False,
    dicom_seg: bool = False,
    pictures: bool = True,
    nonfinite: NonFinite = "refuse",
    report: bool = False,
    dicom_sr: bool = False,
    languages: Sequence[str] | None = None,
    explain: bool = False,
) -> OutputChoices:
    """The options of :func:`predict`, checked (``languages`` needs ``report``; ``dicom_sr`` implies it)."""
    report = report or dicom_sr
    if languages is not None and not report:
        raise ConfigError("--lang", "chooses the languages of the reports: add --report")
    chosen = parse_languages(languages if languages is not None else DEFAULT_LANGUAGES)
    return OutputChoices(
        save=SaveOptions(pictures=pictures, dicom_seg=dicom_seg or dicom_sr),
        tta=tta, nonfinite=nonfinite, report=report, dicom_sr=dicom_sr, languages=tuple(chosen), explain=explain,
    )  # fmt: skip


def skip_reason(item: Any, error: MedlensError) -> str:
    """Why ``item`` was skipped: the problem, or the whole error when it names another file (one in a series)."""
    return error.problem if isinstance(error, InputError) and str(error.path) == str(item) else str(error)


def write_prediction(
    bundle: Bundle, prediction: Prediction, folder: Path, stem: str, choices: OutputChoices
) -> dict[str, str]:
    """Write one prediction's files into ``folder`` as ``stem`` (its JSON, the task's files, and the extras the
    choices ask for); return the files by role. The one place both ``predict`` and ``predict --ray`` write."""
    files = prediction.save(folder, stem, choices.save)
    image = read_input(prediction.source, choices.nonfinite) if choices.explain else None
    return files | write_extras(
        bundle, prediction, image, folder, stem, files, report=choices.report, languages=choices.languages,
        dicom_sr=choices.dicom_sr,
    )  # fmt: skip


def finish_folder(
    bundle: Bundle,
    folder: Path,
    made: Sequence[Prediction],
    rows: Sequence[dict[str, Any]],
    skipped: Sequence[tuple[str, str]],
    paths: Sequence[Path],
) -> None:
    """Write the task's outputs about all predictions, ``predictions.csv`` and ``skipped.csv`` into ``folder``.

    Raises:
        InputError: when nothing was predicted (every input skipped).
    """
    if not rows:
        first = skipped[0] if skipped else (str(paths[0]), "no prediction")
        raise InputError(first[0], f"nothing could be predicted ({len(skipped)} input(s) skipped; first: {first[1]})")
    bundle.task.finish_predictions(folder, made)
    write_table(folder / "predictions.csv", list(rows))
    if skipped:
        write_table(folder / "skipped.csv", [{"input": i, "reason": r} for i, r in skipped])


def write_extras(
    bundle: Bundle,
    prediction: Prediction,
    image: Image | None,
    folder: Path,
    stem: str,
    files: dict[str, str],
    *,
    report: bool = False,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    dicom_sr: bool = False,
) -> dict[str, str]:
    """The files beside a saved prediction that need the bundle, by role: with an ``image``, its explanation by the
    bundle's default method (``explanation``: the overlay PNG; ``explanation_map``, ``explanation_json`` and, for
    DICOM input, ``explanation_dicom``); with ``report``, the clinical report and its texts (naming the explanation's
    files) and with ``dicom_sr`` the SR.

    Args:
        bundle: the model that made ``prediction``.
        prediction: the prediction, already saved into ``folder`` as ``stem`` (``files``: what that wrote).
        image: the input as predicted, to explain; None: no explanation.
        folder: where the prediction's files are.
        stem: the name its files start with.
        files: the prediction's files by role.
        report: write ``reports/<stem>.json`` and the texts.
        languages: the texts' languages.
        dicom_sr: also the DICOM SR (DICOM input).
    """
    made: dict[str, str] = {}
    explained = None
    if image is not None:
        from medlens.explanations import explain_image

        explanation = explain_image(bundle, image)
        saved = explanation.save(folder, stem)
        made |= {"explanation" if role == "overlay" else f"explanation_{role}": name for role, name in saved.items()}
        pictures = {role: name for role, name in saved.items() if role != "json"}  # what a reader looks at
        explained = {"method": explanation.method, "files": pictures}
    if report:
        made |= write_reports(
            prediction, bundle, folder, stem, files, languages=list(languages), dicom_sr=dicom_sr, explanation=explained
        )
    return made
