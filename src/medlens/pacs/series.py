"""One series, retrieved or received: check it against the bundle's rules, predict, write the result objects.

``medlens pacs run`` and ``medlens listen`` both go through :func:`predict_series`, so a series gives the same
results whichever way it reached the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from medlens.core.errors import InputError
from medlens.pacs.results import write_results
from medlens.pacs.rules import SeriesFacts, SeriesRules, rules_for

if TYPE_CHECKING:
    from medlens.core.prediction import Prediction
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass
class SeriesOutcome:
    """What became of one series.

    Attributes:
        facts: what the rules looked at.
        prediction: the model's prediction, or None when the series was passed over.
        results: the DICOM result files written.
        passed_over: why the model does not take this series (None when it was predicted).
    """

    facts: SeriesFacts
    prediction: Prediction | None = None
    results: list[Path] = field(default_factory=list)
    passed_over: str | None = None


def facts_of(files: Sequence[Path]) -> SeriesFacts:
    """The rules' view of a series, from its first file's header and the number of images.

    Raises:
        InputError: the first file is not DICOM or has no SeriesInstanceUID.
    """
    if not files:
        raise InputError(Path("."), "a series without files")
    path = Path(files[0])
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if "SeriesInstanceUID" not in ds:
        raise InputError(path, "no SeriesInstanceUID")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return SeriesFacts(
        series_uid=str(ds.SeriesInstanceUID),
        modality=str(ds.get("Modality", "")),
        body_part=str(ds.get("BodyPartExamined", "")),
        description=str(ds.get("SeriesDescription", "")),
        images=len(files) if len(files) > 1 else frames,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
    )


def predict_series(
    bundle: Bundle, files: Sequence[Path], folder: Path, rules: SeriesRules | None = None
) -> SeriesOutcome:
    """Predict one DICOM series and write its result objects into ``folder``, unless the rules pass it over.

    Args:
        bundle: the model.
        files: the series' DICOM files.
        folder: where the result objects go (created only when there are results).
        rules: which series the model takes (default: the bundle's, :func:`~medlens.pacs.rules.rules_for`).

    Raises:
        InputError: the series cannot be read or predicted (naming a file and the problem).
    """
    from medlens.io import read_image

    files = sorted(Path(p) for p in files)
    facts = facts_of(files)
    refusal = (rules or rules_for(bundle)).refusal(facts)
    if refusal is not None:
        log.info("series %s passed over: %s", facts.series_uid, refusal)
        return SeriesOutcome(facts, passed_over=refusal)
    image = read_image(files if len(files) > 1 else files[0])
    image.meta["source"] = f"series {facts.series_uid}"
    prediction = bundle.predict(image)
    results = write_results(prediction, image, image.meta.get("source_files", files), folder, bundle)
    return SeriesOutcome(facts, prediction, results)
