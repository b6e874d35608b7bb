"""Denoising image files with a trained denoiser (``medlens denoise apply``), each written in its own geometry and
format: NIfTI (and NRRD, MHA, npz) with the input's affine, PNG for pictures (8-bit, the input's values kept where
it was 8-bit), and a DICOM file or series as a DICOM series beside the source study (``medlens.io`` writers).

One ``<name>`` per input (:func:`medlens.core.outputs.unique_stem`); ``denoised.csv`` lists what was written and
``skipped.csv`` each input that could not be denoised with the reason, as ``medlens predict`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medlens.core.errors import InputError, MedlensError
from medlens.core.image import Image, require_finite
from medlens.core.outputs import output_folder, unique_stem, write_table
from medlens.core.progress import ProgressFn, report
from medlens.denoising.intensities import scale, unscale
from medlens.denoising.model_folder import TrainedDenoiser, load_denoiser

log = logging.getLogger(__name__)

#: output suffix by input format (pictures become lossless PNG)
_SUFFIX = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "npz": ".npz"}
_DICOM = ("dicom", "dicom-series", "dicomdir")


@dataclass
class DenoisingRun:
    """What ``apply`` did: (input, output) pairs written and (input, reason) pairs skipped."""

    out: Path
    written: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def apply_denoiser(
    denoiser_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> DenoisingRun:
    """Denoise every input image and write each into ``out`` in its own format and geometry.

    Args:
        denoiser_dir: a folder written by ``medlens denoise train``.
        inputs: image files and folders (PNG, JPEG, TIFF, NIfTI, NRRD, MHA, npz, DICOM files and series).
        out: the folder to create.
        overwrite: replace an existing output folder that medlens made.
        progress: called per input.

    Raises:
        InputError: a missing input, or nothing could be denoised (every input skipped).

    Example:
        >>> run = apply_denoiser("ae", ["scan.nii.gz"], "denoised")  # doctest: +SKIP
        >>> run.written  # doctest: +SKIP
        [('scan.nii.gz', 'scan.nii.gz')]
    """
    from medlens.workflows.prediction import expand_inputs

    denoiser = load_denoiser(denoiser_dir)
    paths = expand_inputs(inputs, denoiser.info.spatial_dims)
    guarded = [("input", Path(p)) for p in inputs] + [("denoiser", Path(denoiser_dir))]
    result = DenoisingRun(Path(out))
    with output_folder(out, kind="denoised", overwrite=overwrite, inputs=guarded) as tmp:
        used: set[str] = set()
        report(progress, "denoising", 0, len(paths))
        for done, path in enumerate(paths, start=1):
            try:
                name = _denoise_file(denoiser, path, tmp, used)
            except MedlensError as exc:
                reason = exc.problem if isinstance(exc, InputError) and str(exc.path) == str(path) else str(exc)
                result.skipped.append((str(path), reason))
                log.warning("skipped %s: %s", path, reason)
            else:
                result.written.append((str(path), name))
            report(progress, "denoising", done, len(paths))
        if not result.written:
            first = result.skipped[0]
            raise InputError(first[0], f"nothing could be denoised ({len(result.skipped)} skipped; first: {first[1]})")
        write_table(tmp / "denoised.csv", [{"input": i, "output": o} for i, o in result.written])
        if result.skipped:
            write_table(tmp / "skipped.csv", [{"input": i, "reason": r} for i, r in result.skipped])
    return result


def denoise_image(denoiser: TrainedDenoiser, image: Image) -> Image:
    """The denoised image: same shape, affine and metadata; integer pixels stay integers of the same type.

    Raises:
        InputError: the image's dimensions or channels do not fit the denoiser, or its pixels are not finite.
    """
    source = str(image.meta.get("source", "<memory>"))
    require_finite(image, source, "denoise")
    dims, channels = denoiser.info.spatial_dims, denoiser.info.channels
    view = image.as_2d() if dims == 2 else image
    if view.spatial_dims != dims:
        raise InputError(source, f"a {image.spatial_dims}D image; this denoiser takes {dims}D images")
    if view.channels != channels:
        raise InputError(source, f"{view.channels} channel(s); this denoiser takes {channels}")
    scaled, low, high = scale(view.array)
    values = unscale(denoiser.denoise(scaled), low, high)
    if view is not image:  # a one-slice volume read as a picture: back to (C, column, row, 1)
        values = values.swapaxes(1, 2)[..., None]
    dtype = image.array.dtype
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        values = np.clip(np.round(values), limits.min, limits.max).astype(dtype)
    return Image(values, image.affine.copy(), "scalar", dict(image.meta), dict(image.identifiers))


def _denoise_file(denoiser: TrainedDenoiser, path: Path, folder: Path, used: set[str]) -> str:
    """Read, denoise and write one input; the name written (a file, or a folder for a DICOM series)."""
    from medlens.io import read_image, write_image
    from medlens.io.dicom_series_writer import write_dicom_series
    from medlens.io.registry import detect_format

    image = read_image(path)
    image.meta["source"] = str(path)
    denoised = denoise_image(denoiser, image)
    fmt = detect_format(path)
    stem = unique_stem(path, used)
    if fmt in _DICOM:
        modality = str(image.meta.get("modality", "MR"))
        ids = image.identifiers
        write_dicom_series(
            denoised,
            folder / stem,
            modality=modality if modality in ("MR", "CT") else "MR",
            series_description=f"{image.meta.get('series_description', '')} denoised (medlens)".strip(),
            patient_id=ids.get("PatientID", ""),
            patient_name=ids.get("PatientName", ""),
            study_uid=ids.get("StudyInstanceUID"),
        )
        return stem
    suffix = _SUFFIX.get(fmt, ".png")
    target = folder / f"{stem}{suffix}"
    if suffix == ".png":
        low, high = _display_range(image.array)
        write_image(denoised, target, window=((low + high) / 2.0, high - low))
    else:
        write_image(denoised, target)
    return target.name


def _display_range(array: np.ndarray) -> tuple[float, float]:
    """The values a picture's 8 bits span: 0-255 for 8-bit input (kept as it is), else the input's own range."""
    if array.dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(array.min()), float(array.max())
    return low, max(high, low + 1e-6)
