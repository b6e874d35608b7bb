"""The typed result of ``bundle.predict``: one base class, one subclass per task (in the task's package).

Every prediction knows which task and model made it and which input it is about, turns into JSON-ready
data with :meth:`Prediction.to_dict` (small numbers only: masks and pictures go to files through
:meth:`Prediction.save`), and gives one flat row for ``predictions.csv`` (:meth:`Prediction.table_row`).
The command line, evaluation, export checks and the service all read predictions through these three
methods, so a prediction means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medlens.core.outputs import json_text

if TYPE_CHECKING:
    import numpy as np

    from medlens.core.image import Image


@dataclass
class SaveOptions:
    """What :meth:`Prediction.save` writes besides the JSON.

    Attributes:
        pictures: overlay pictures (PNG) where a task draws them.
        dicom_seg: a DICOM SEG for segmentations of DICOM input.
    """

    pictures: bool = True
    dicom_seg: bool = False


@dataclass(kw_only=True)
class Prediction:
    """What a model said about one input.

    Attributes:
        model: the model's name (its run folder's name).
        source: the input's path, or ``"<memory>"`` for an image given in memory.
        flags: things a reader must know about this input (cleaned pixels, a choice made for it).
    """

    task: ClassVar[str] = ""
    model: str
    source: str
    flags: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The task's own JSON-ready keys (subclasses)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``task``, ``model``, ``source``, ``flags`` and the task's keys."""
        return {"task": self.task, "model": self.model, "source": self.source, **self.fields(), "flags": self.flags}

    def table_row(self) -> dict[str, Any]:
        """One flat row for ``predictions.csv`` (numbers and short strings only)."""
        return {"input": self.source}

    def caption(self) -> list[str]:
        """The result in a few words, for pictures a viewer shows (a Secondary Capture): from :meth:`table_row`."""
        row = {k: v for k, v in self.table_row().items() if k != "input"}
        words = [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()]
        return [", ".join(words)] if words else []

    def picture(self, image: Image) -> np.ndarray | None:
        """An RGB picture ``(H, W, 3)`` uint8 of the result drawn on ``image`` (the input), where the task draws one
        (subclasses: a label map blended in, boxes); None: the image as it is, with the caption, shows the result."""
        return None

    def save(self, folder: Path, stem: str, options: SaveOptions | None = None) -> dict[str, str]:
        """Write ``<stem>.json`` (and the task's files) into ``folder``; return the files written by role."""
        path = folder / f"{stem}.json"
        files = self.save_files(folder, stem, options or SaveOptions())
        path.write_text(json_text(self.to_dict() | ({"files": files} if files else {})) + "\n")
        return {"json": path.name, **files}

    def save_files(self, folder: Path, stem: str, options: SaveOptions) -> dict[str, str]:
        """Write the task's files (masks, overlays, DICOM); return their names by role (subclasses)."""
        return {}
