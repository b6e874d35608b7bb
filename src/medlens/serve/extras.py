"""``?explain=true`` and ``?report=true``: the one place the service asks the library for explanations and reports.

Both are made by :func:`medlens.workflows.prediction.write_extras`, as ``medlens predict --explain --report``
makes them: the explanation by the bundle's default method (chosen on validation at training), and the clinical
report JSON with its plain-language texts (English and Chinese), which names the explanation's files. They come
back as links like the mask and the overlay. The upload's image carries no header (see
:data:`medlens.serve.uploads.SAFE_META`), so no DICOM object with a patient's identity is ever made here. A feature
a particular bundle cannot give is the library's error, which the service answers as a 422 naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medlens.core.prediction import SaveOptions

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.models.bundle import Bundle


@dataclass(frozen=True)
class Extras:
    """What a request asked for besides the prediction."""

    explain: bool = False
    report: bool = False

    def write(
        self, bundle: Bundle, prediction: Prediction, image: Image, folder: Path, stem: str, files: dict[str, str]
    ) -> dict[str, str]:
        """The extra files in ``folder`` by role (none when nothing was asked)."""
        if not (self.explain or self.report):
            return {}
        from medlens.workflows.prediction import write_extras

        return write_extras(
            bundle, prediction, image if self.explain else None, folder, stem, files, report=self.report
        )


def save_options(pictures: bool = True) -> SaveOptions:
    """What ``Prediction.save`` writes for a request: the pictures, never a DICOM object (no header is kept)."""
    return SaveOptions(pictures=pictures, dicom_seg=False)
