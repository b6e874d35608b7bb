"""One explanation of one input, and its files: ``explain_image(bundle, image)`` -> :class:`Explanation`.

Files written by :meth:`Explanation.save` (``STEM`` is the input's name, ``METHOD`` the method):

- ``STEM_METHOD.json``: what was explained (method, target, the model's score for it, the peak), and the files;
- ``STEM_METHOD.png``: the map over the picture (a volume: its planes through the map's peak voxel);
- ``STEM_METHOD.nii.gz`` (volumes) or ``STEM_METHOD.npz`` (pictures; NIfTI holds volumes only): the map itself, in
  the input's own geometry (shape and affine), readable with ``medlens.read_image``;
- ``STEM_METHOD.dcm`` for DICOM input: the overlay as a DICOM Secondary Capture in the input's study (patient and
  study of the source, a new series), listing the source images it was derived from (Source Image Sequence), which
  any viewer shows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import ConfigError
from medlens.core.image import Image
from medlens.core.outputs import json_text

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass
class Explanation:
    """Where in the input the model found its answer for one target.

    Attributes:
        map: the map as an :class:`Image` of kind ``scalar`` in the input's own geometry ``(1, *spatial)``; higher
            values speak more for the target (CAMs in [0, 1]; occlusion and integrated gradients in score units).
        method: the method's registry name.
        target: what was explained (a class, a region's class, a box).
        score: the model's score for the target on the input (probability, box score or value).
        model: the model's name.
        source: the input's path, or ``"<memory>"``.
        seconds: time the method took.
        image: the input (for overlays and DICOM output; not serialised).
        network_map: the map on the network input's grid (what faithfulness measures; not serialised).
    """

    map: Image
    method: str
    target: str
    score: float
    model: str
    source: str
    seconds: float
    image: Image = field(repr=False)
    network_map: np.ndarray = field(repr=False)

    @property
    def peak(self) -> list[int]:
        """The index of the map's largest value, in the input's own voxel (or pixel) indices."""
        return [int(i) for i in np.unravel_index(int(np.argmax(self.map.array[0])), self.map.spatial_shape)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "method": self.method,
            "target": self.target,
            "score": round(float(self.score), 6),
            "peak_index": self.peak,
            "shape": list(self.map.spatial_shape),
            "seconds": round(self.seconds, 4),
        }

    def save(self, folder: Path, stem: str) -> dict[str, str]:
        """Write the JSON, the overlay PNG, the map (NIfTI for volumes, npz for pictures) and, for DICOM input, a
        Secondary Capture of the overlay; return the files written by role."""
        from medlens.io import write_image
        from medlens.reports.figures import array_png
        from medlens.reports.pictures import heatmap_overlay

        base = f"{stem}_{self.method}"
        heat = self.map.array[0]
        overlay = heatmap_overlay(self.image, heat)

        (folder / f"{base}.png").write_bytes(array_png(overlay))
        files = {"overlay": f"{base}.png"}
        map_name = f"{base}.nii.gz" if self.map.spatial_dims == 3 else f"{base}.npz"
        write_image(self.map, folder / map_name)
        files["map"] = map_name
        sources = [Path(p) for p in self.image.meta.get("source_files", [])]
        if self.image.meta.get("source_format") == "dicom" and sources:
            from medlens.io.secondary_capture import write_secondary_capture

            write_secondary_capture(
                self.image,
                folder / f"{base}.dcm",
                overlay,
                reference=sources[0],
                series_description=f"medlens {self.method} explanation: {self.target}"[:64],
                series_number=9902,
                sources=sources,
                derivation=f"{self.method} map of {self.model} for {self.target} over the source image (decision "
                "support, not for diagnosis)",
                oriented=heat.ndim == 2 or heat.shape[2] == 1,  # one plane; a volume shows three side by side
            )
            files["dicom"] = f"{base}.dcm"
        (folder / f"{base}.json").write_text(json_text(self.to_dict() | {"files": files}) + "\n")
        return {"json": f"{base}.json", **files}


def default_method(bundle: Bundle) -> str:
    """The bundle's default method: the one training chose on validation (``bundle.explanation["default"]``), or, for
    a bundle trained before explanations were scored, the task's first method (Grad-CAM; EigenCAM for detection)."""
    chosen = bundle.explanation.get("default") if bundle.explanation else None
    methods = bundle.task.explain_methods
    if isinstance(chosen, str) and chosen in methods:
        return chosen
    if not methods:
        raise ConfigError("task", f"the {bundle.plan.task} task has no explanation methods")
    return methods[0]


def check_method(bundle: Bundle, method: str) -> str:
    """``method`` when the bundle's task supports it; a one-line error naming the supported ones otherwise."""
    from medlens.explanations.methods import get_method

    get_method(method)  # unknown names: the registry's error
    if method not in bundle.task.explain_methods:
        raise ConfigError(
            "--method",
            f"{method} does not explain {bundle.plan.task} models "
            f"(supported: {', '.join(bundle.task.explain_methods)})",
        )
    return method


def explain_image(bundle: Bundle, image: Image, method: str | None = None, target: str | None = None) -> Explanation:
    """Explain one input (in its own geometry) with ``method`` (default: the bundle's) for ``target`` (default: the
    model's answer: the predicted class, the largest predicted region's class, the best box).

    Example:
        >>> from medlens import load_bundle, read_image
        >>> bundle = load_bundle("runs/pneumonia")  # doctest: +SKIP
        >>> explanation = explain_image(bundle, read_image("xray.png"))  # doctest: +SKIP
        >>> explanation.save(folder, "xray")  # doctest: +SKIP
    """
    from medlens.explanations.methods import compute_map

    name = check_method(bundle, method or default_method(bundle))
    explainer = bundle.task.explainer(bundle, image, target=target)
    start = time.perf_counter()
    raw = compute_map(name, explainer)
    seconds = time.perf_counter() - start
    return Explanation(
        map=explainer.to_image(raw),
        method=name,
        target=explainer.target,
        score=float(explainer.scores(explainer.x)[0]),
        model=bundle.name,
        source=str(image.meta.get("source", "<memory>")),
        seconds=seconds,
        image=image,
        network_map=raw,
    )
