"""A segmentation: the label map in the input's own geometry, the size of each class, and its files.

The path from an image to a mask is the same everywhere (prediction, evaluation, the service): normalise,
reorient and resample to the plan's grid (:mod:`.preprocessing`), Gaussian sliding window over every member
(:mod:`.inference`), probabilities brought back exactly to the input's grid, arg-max, keep-largest-component
where validation chose it.

Uncertainty, from the same probabilities: the voxel map is the entropy (nats) of the averaged probabilities, on
the input's grid (0 sure, ln K where every class is equally likely); the case score is its mean over the voxels
whose foreground probability (1 - p(background)) is at least :data:`REGION_PROBABILITY` (the predicted structures
and their doubtful margin; 0 when there are none); the member disagreement is the mean over the same voxels of
the mutual information between the label and the pass (members, and mirrorings with ``tta``): entropy of the mean
minus the passes' mean entropy, 0 with one pass.
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
#: voxels whose foreground probability is at least this make up the region of the case uncertainty score
REGION_PROBABILITY = 0.1


@dataclass(kw_only=True)
class SegmentationPrediction(Prediction):
    """A label map (class indices) on the input's own grid, with the size of each foreground class.

    Attributes:
        labels: the label map as an :class:`Image` of kind ``label`` in the input's geometry, ``(1, *spatial)``.
        class_names: every class, background first.
        sizes: foreground class name to its volume in mL (3D) or area in mm² (2D).
        image: the input, for overlays and DICOM output (not serialised).
        seconds: time per stage (preprocess, network, postprocess).
        uncertainty_map: voxel entropy (nats) of the averaged probabilities, an :class:`Image` on the input's grid
            ``(1, *spatial)`` float32; saved beside the mask as ``<stem>_uncertainty.nii.gz`` (2D: ``.npz``).
        uncertainty_score: the case score: mean voxel entropy over the region (see the module notes), nats.
        member_disagreement: mean mutual information between label and pass over the region, nats (0: one pass).
        passes: members times test-time mirrorings averaged.

    ``to_dict()`` holds the numbers under ``uncertainty``.
    """

    task = "segmentation"
    labels: Image
    class_names: list[str]
    sizes: dict[str, float]
    image: Image = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    uncertainty_map: Image | None = field(default=None, repr=False)
    uncertainty_score: float = 0.0
    member_disagreement: float = 0.0
    passes: int = 1

    @property
    def volumes_ml(self) -> dict[str, float]:
        return self.sizes if self.labels.spatial_dims == 3 else {}

    @property
    def areas_mm2(self) -> dict[str, float]:
        return self.sizes if self.labels.spatial_dims == 2 else {}

    def fields(self) -> dict[str, Any]:
        key = "volumes_ml" if self.labels.spatial_dims == 3 else "areas_mm2"
        return {
            key: self.sizes,
            "shape": list(self.labels.spatial_shape),
            "spacing_mm": list(self.labels.spacing),
            "uncertainty": {
                "score": self.uncertainty_score,
                "member_disagreement": self.member_disagreement,
                "passes": self.passes,
                "region": f"voxels with foreground probability >= {REGION_PROBABILITY}",
                "unit": "nats (voxel entropy; at most ln of the number of classes)",
            },
        }

    def table_row(self) -> dict[str, Any]:
        unit = "ml" if self.labels.spatial_dims == 3 else "mm2"
        sizes = {f"{name}_{unit}": v for name, v in self.sizes.items()}
        return {"input": self.source, **sizes, "uncertainty": self.uncertainty_score}

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
        if self.uncertainty_map is not None:
            from medlens.io.writers import write_npz

            suffix = "_uncertainty.nii.gz" if array.ndim == 3 else "_uncertainty.npz"
            writer = write_image if array.ndim == 3 else write_npz
            files["uncertainty_map"] = writer(self.uncertainty_map, folder / f"{stem}{suffix}").name
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
    from medlens.tasks.segmentation.inference import keep_largest_component, sliding_window_passes
    from medlens.tasks.segmentation.preprocessing import check_image, prepare_image, to_input_grid

    plan = bundle.plan
    seg = plan.segmentation  # type: ignore[attr-defined]
    image = check_image(image, plan)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    prepared = prepare_image(image, plan)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    probs, pass_entropy, passes = sliding_window_passes(bundle.networks(), prepared.tensor, plan, tta=tta)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    with torch.inference_mode():
        back = to_input_grid(torch.cat([probs, pass_entropy[None]]), prepared, plan)  # type: ignore[arg-type]
        probs, pass_entropy = back[:-1], back[-1]  # (K, *input grid), (*input grid)
        labels = probs.argmax(0).numpy().astype(np.uint8)
        plogp = probs * torch.log(probs.clamp_min(1e-12))  # (K, *input grid)
        entropy = (-plogp.sum(0)).clamp_min(0).numpy()  # (*input grid) nats
        disagreement = np.maximum(entropy - pass_entropy.numpy(), 0.0) if passes > 1 else np.zeros_like(entropy)
        region = (1.0 - probs[0]).numpy() >= REGION_PROBABILITY
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
        uncertainty_map=Image(
            entropy[None].astype(np.float32),
            image.affine.copy(),
            "scalar",
            {"source": image.meta.get("source"), "quantity": "voxel entropy (nats)"},
        ),
        uncertainty_score=round(float(entropy[region].mean()) if region.any() else 0.0, 6),
        member_disagreement=round(float(disagreement[region].mean()) if region.any() else 0.0, 6),
        passes=passes,
    )


def predict_images(bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[SegmentationPrediction]:
    return [segment(bundle, image, tta=tta) for image in images]
