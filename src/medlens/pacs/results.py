"""A prediction on a DICOM series as DICOM objects that go back into the study: SEG, Secondary Capture, SR.

Each object joins the source study with its identifiers exactly as received (patient, study UID, accession
number: no de-identification on this path, the results go back to the archive the study came from), gets a new
series UID, and a series description naming the model and its version (:func:`model_version`).

Result kinds (a registry, :func:`register_result`): ``seg``, a DICOM Segmentation for a label map on a DICOM
volume (through :func:`medlens.io.dicom_seg.write_dicom_seg`); ``sc``, a Secondary Capture picture of the result
for every prediction that has no SEG (classification, detection, regression: the image with boxes or a caption,
so any viewer shows it); ``sr``, a DICOM Comprehensive 3D SR (TID 1500) of the task's findings for every
prediction (:func:`medlens.io.dicom_sr.write_dicom_sr`; a segmentation's volumes reference its SEG).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import pydicom
from pydicom.dataset import Dataset

from medlens.core.image import Image

if TYPE_CHECKING:
    from medlens.core.prediction import Prediction
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultContext:
    """What every result object needs besides the prediction.

    Attributes:
        image: the input volume or picture, as read from ``files``.
        files: the source series' DICOM files.
        model: the model's name (its run folder's name).
        version: the model's version (:func:`model_version`).
        findings: what the prediction found, in the shared vocabulary (``Task.findings``): what the SR says.
    """

    image: Image
    files: tuple[Path, ...]
    model: str
    version: str
    findings: tuple[dict[str, Any], ...] = ()

    def description(self, kind: str) -> str:
        """SeriesDescription of a result series (64 characters at most): model, version, kind."""
        text = f"{self.model} v{self.version} {kind}"
        return (
            text
            if len(text) <= 64
            else f"{self.model[: 64 - len(self.version) - len(kind) - 3]} v{self.version} {kind}"
        )

    @property
    def software_version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            medlens_version = version("medlens")
        except PackageNotFoundError:  # running from a source tree
            medlens_version = "source"
        return f"medlens {medlens_version}; {self.model} {self.version}"[:64]

    def reference(self) -> Dataset:
        """The first source file's header (the study the results join)."""
        return pydicom.dcmread(self.files[0], stop_before_pixels=True)


ResultWriter = Callable[["Prediction", ResultContext, Path], "Path | None"]
_KINDS: dict[str, ResultWriter] = {}


def register_result(name: str) -> Callable[[ResultWriter], ResultWriter]:
    """Decorator: ``fn(prediction, context, folder) -> Path | None`` writes one result object (None: not for this
    prediction)."""

    def add(fn: ResultWriter) -> ResultWriter:
        _KINDS[name] = fn
        return fn

    return add


def result_kinds() -> list[str]:
    """The result kinds written, in order (the SR after the SEG it references)."""
    return list(_KINDS)


def model_version(bundle: Bundle) -> str:
    """The model's version: the first 8 hex digits of the SHA-1 of its ``bundle.yaml`` (weights, plan, threshold
    and creation time are all named there, so a retrained model gets another version)."""
    from medlens.models.bundle import BUNDLE_FILE

    return hashlib.sha1((Path(bundle.root) / BUNDLE_FILE).read_bytes()).hexdigest()[:8]


def write_results(
    prediction: Prediction, image: Image, files: Sequence[Path], folder: Path, bundle: Bundle
) -> list[Path]:
    """Write every result object that applies to ``prediction`` into ``folder`` (atomically, file by file).

    Args:
        prediction: ``bundle.predict`` of ``image``.
        image: the input as read from ``files``.
        files: the source series' DICOM files.
        folder: where to write (created).
        bundle: the model (its name and version go into each object).

    Returns:
        The files written, one DICOM object each.
    """
    folder.mkdir(parents=True, exist_ok=True)
    findings = tuple(bundle.task.findings(prediction, bundle))
    context = ResultContext(image, tuple(Path(p) for p in files), bundle.name, model_version(bundle), findings)
    written = []
    for name in result_kinds():
        path = _KINDS[name](prediction, context, folder)
        if path is not None:
            log.info("%s written: %s", name, path.name)
            written.append(path)
    return written


@runtime_checkable
class LabelMapPrediction(Protocol):
    """A prediction that is a label map on the input's grid (what a DICOM SEG holds)."""

    labels: Image
    class_names: list[str]


def _has_seg(prediction: Prediction, context: ResultContext) -> bool:
    return (
        isinstance(prediction, LabelMapPrediction)
        and prediction.labels.spatial_dims == 3
        and context.image.meta.get("source_format") == "dicom"
        and len(context.files) == context.image.spatial_shape[2]
    )


@register_result("seg")
def seg_result(prediction: Prediction, context: ResultContext, folder: Path) -> Path | None:
    """A DICOM SEG of a label map predicted on a DICOM volume (one frame per source slice and segment)."""
    from medlens.io.dicom_seg import write_dicom_seg

    if not _has_seg(prediction, context):
        return None
    labelled = cast(LabelMapPrediction, prediction)  # _has_seg checked it
    return write_dicom_seg(
        labelled.labels.array[0],
        context.image,
        context.files,
        folder / "seg.dcm",
        labelled.class_names,
        series_description=context.description("SEG"),
        software_version=context.software_version,
    )


@register_result("sc")
def secondary_capture_result(prediction: Prediction, context: ResultContext, folder: Path) -> Path | None:
    """A Secondary Capture picture of the result (the task's picture, or the image) with a caption, for every
    prediction that gets no SEG."""
    from medlens.io.secondary_capture import write_secondary_capture
    from medlens.io.writers import render
    from medlens.reports.pictures import captioned

    if _has_seg(prediction, context):
        return None
    picture = prediction.picture(context.image)
    if picture is None:
        picture = render(context.image)
    lines = [*prediction.caption(), f"{context.model} v{context.version} - research use, not for diagnosis"]
    return write_secondary_capture(
        context.image,
        folder / "sc.dcm",
        captioned(picture, lines),
        reference=context.reference(),
        series_description=context.description("result"),
    )


@register_result("sr")
def sr_result(prediction: Prediction, context: ResultContext, folder: Path) -> Path | None:
    """A DICOM Comprehensive 3D SR (TID 1500) of the findings; a segmentation's volumes reference the SEG written
    just before it."""
    from medlens.io.dicom_sr import write_dicom_sr

    seg = folder / "seg.dcm"
    if not context.findings or (not seg.is_file() and any(f["kind"] == "volume" for f in context.findings)):
        return None
    return write_dicom_sr(
        list(context.findings),
        context.files,
        folder / "sr.dcm",
        segmentation=seg if seg.is_file() else None,
        algorithm=context.model,
        version=context.version,
        series_description=context.description("SR"),
    )
