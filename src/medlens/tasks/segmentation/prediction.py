"""A segmentation: the label map in the input's own geometry, the size of each class, and its files.

The path from an image to a mask is the same everywhere (prediction, evaluation, the service): normalise,
reorient and resample to the plan's grid (:mod:`.preprocessing`), Gaussian sliding window over every member
(:mod:`.inference`), probabilities brought back exactly to the input's grid, arg-max, keep-largest-component
where validation chose it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.image import Image
from medlens.core.prediction import Prediction, SaveOptions

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SegmentationPrediction(Prediction):
    """A label map (class indices) on the input's own grid, with the size of each foreground class.

    Attributes:
        labels: the label map as an :class:`Image` of kind ``label`` in the input's geometry, ``(1, *spatial)``.
        class_names: every class, background first.
        sizes: foreground class name to its volume in mL (3D) or area in mm² (2D).
        image: the input, for overlays and DICOM output (not serialised).
        seconds: time per stage (preprocess, network, postprocess).
    """

    task = "segmentation"
    labels: Image
    class_names: list[str]
    sizes: dict[str, float]
    image: Image = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def volumes_ml(self) -> dict[str, float]:
        return self.sizes if self.labels.spatial_dims == 3 else {}

    @property
    def areas_mm2(self) -> dict[str, float]:
        return self.sizes if self.labels.spatial_dims == 2 else {}

    def fields(self) -> dict[str, Any]:
        key = "volumes_ml" if self.labels.spatial_dims == 3 else "areas_mm2"
        return {key: self.sizes, "shape": list(self.labels.spatial_shape), "spacing_mm": list(self.labels.spacing)}

    def table_row(self) -> dict[str, Any]:
        unit = "ml" if self.labels.spatial_dims == 3 else "mm2"
        return {"input": self.source, **{f"{name}_{unit}": v for name, v in self.sizes.items()}}

    def caption(self) -> list[str]:
        unit = "mL" if self.labels.spatial_dims == 3 else "mm2"
        return [", ".join(f"{name} {v:.3g} {unit}" for name, v in self.sizes.items())]

    def picture(self, image: Image) -> np.ndarray | None:
        from medlens.reports.pictures import busiest_slice, label_overlay

        array = self.labels.array[0]
        return label_overlay(self.image, array, busiest_slice(array))

    def save_files(self, folder: Path, stem: str, options: SaveOptions) -> dict[str, str]:
        from medlens.io import write_image
        from medlens.reports.figures import array_png
        from medlens.reports.pictures import label_overlay_png

        files: dict[str, str] = {}
        array = self.labels.array[0]
        if array.ndim == 3:
            mask = write_image(self.labels, folder / f"{stem}_mask.nii.gz")
        else:
            mask = folder / f"{stem}_mask.png"
            mask.write_bytes(array_png(array.astype(np.uint8)))
        files["mask"] = mask.name
        if options.pictures:
            overlay = folder / f"{stem}_overlay.png"
            overlay.write_bytes(label_overlay_png(self.image, array))
            files["overlay"] = overlay.name
        if options.dicom_seg:
            written = self._write_seg(folder / f"{stem}_seg.dcm")
            if written is not None:
                files["dicom_seg"] = written.name
        return files

    def _write_seg(self, path: Path) -> Path | None:
        from medlens.io.dicom_seg import write_dicom_seg

        files = [Path(p) for p in self.image.meta.get("source_files", [])]
        if not files or self.labels.spatial_dims != 3:
            log.warning("%s: a DICOM SEG needs a DICOM volume as input; not written", self.source)
            return None
        return write_dicom_seg(self.labels.array[0], self.image, files, path, self.class_names)


def segment(bundle: Bundle, image: Image, *, tta: bool = False) -> SegmentationPrediction:
    """Segment one image in its own geometry with every member of ``bundle``."""
    from medlens.tasks.segmentation.inference import keep_largest_component, sliding_window_probabilities
    from medlens.tasks.segmentation.preprocessing import check_image, prepare_image, to_input_grid

    plan = bundle.plan
    seg = plan.segmentation  # type: ignore[attr-defined]
    image = check_image(image, plan)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    prepared = prepare_image(image, plan)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    probs = sliding_window_probabilities(bundle.networks(), prepared.tensor, plan, tta=tta)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    with torch.inference_mode():
        labels = to_input_grid(probs, prepared, plan).argmax(0).numpy().astype(np.uint8)  # type: ignore[arg-type]
    labels = keep_largest_component(labels, seg.keep_largest_component)
    t3 = time.perf_counter()
    names = bundle.class_names
    unit = float(np.prod(image.spacing)) / (1000.0 if labels.ndim == 3 else 1.0)  # mm³ -> mL, or mm²
    counts = np.bincount(labels.ravel(), minlength=len(names))
    return SegmentationPrediction(
        model=bundle.name,
        source=str(image.meta.get("source", "<memory>")),
        flags=list(image.meta.get("flags", [])),
        labels=Image(labels[None], image.affine.copy(), "label", {"source": image.meta.get("source")}),
        class_names=list(names),
        sizes={n: round(float(counts[k]) * unit, 4) for k, n in enumerate(names) if k},
        image=image,
        seconds={"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2},
    )


def predict_images(bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[SegmentationPrediction]:
    return [segment(bundle, image, tta=tta) for image in images]
