"""Images of a dataset as float arrays scaled to [0, 1], the range the noise model and the networks work in.

Each image is scaled by its own minimum and maximum (``(x - low) / (high - low)``), so a noise sigma is a fraction
of that image's intensity range and a photon count refers to its brightest value; :func:`unscale` maps a result
back to the image's own values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import require_finite
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset


@dataclass
class ScaledImage:
    """One case's pixels, channel-first, scaled to [0, 1]; ``low`` and ``high`` undo the scaling."""

    case_id: str
    patient_id: str
    array: np.ndarray
    low: float
    high: float


def scale(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``array`` as float32 in [0, 1] by its own range, with that range (a constant image becomes zeros)."""
    values = np.asarray(array, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    spread = high - low if high > low else 1.0
    return (values - low) / spread, low, high


def unscale(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """The inverse of :func:`scale`."""
    spread = high - low if high > low else 1.0
    return np.asarray(array, dtype=np.float32) * spread + low


def read_case(dataset: Dataset, case: Case) -> ScaledImage:
    """One case's image (its channels stacked) scaled to [0, 1].

    Raises:
        InputError: an unreadable image, NaN pixels, or channels of different shapes.
    """
    from medlens.io import read_image

    channels = []
    for path in dataset.image_paths(case):
        image = read_image(path)
        image.meta.setdefault("source", str(path))
        if dataset.spec.spatial_dims == 2:
            image = image.as_2d()
        if image.spatial_dims != dataset.spec.spatial_dims:
            raise InputError(path, f"a {image.spatial_dims}D image in a {dataset.spec.spatial_dims}D dataset")
        channels.append(require_finite(image).array)
    if len({c.shape[1:] for c in channels}) > 1:
        raise InputError(dataset.image_paths(case)[0], f"case {case.case_id}: channels of different shapes")
    scaled, low, high = scale(np.concatenate(channels, axis=0))
    return ScaledImage(case.case_id, case.patient_id, scaled, low, high)


def read_split(
    dataset: Dataset, splits: Sequence[str], progress: ProgressFn | None = None, limit: int | None = None
) -> list[ScaledImage]:
    """The images of the given splits, scaled (at most ``limit`` of them, in manifest order).

    Raises:
        InputError: the splits hold no case (naming the manifest), or a case cannot be read.
    """
    cases = [c for s in splits for c in dataset.split(s)][:limit]
    if not cases:
        raise InputError(
            dataset.root / dataset.spec.manifest, f"no case in split(s) {', '.join(splits)}; import it with splits"
        )
    return [read_case(dataset, case) for case in tracked(cases, progress, f"reading {'+'.join(splits)}")]
