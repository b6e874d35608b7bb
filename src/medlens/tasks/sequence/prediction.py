"""The sequence model's answer for one subject: the probability of the positive outcome (the members' mean), the
label at the bundle's threshold, and the attention over the subject's visits (members' mean; sums to 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.outputs import write_table
from medlens.core.prediction import Prediction
from medlens.tasks.sequence.config import ImageColumn
from medlens.tasks.sequence.table import RawTable, VisitTable, encode_subjects, group_visits, read_raw

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle
    from medlens.models.image_encoder import ImageEncoder


@dataclass(kw_only=True)
class SequencePrediction(Prediction):
    """The outcome of one subject.

    Attributes:
        subject: the subject's ID (``source`` is the table it was read from).
        label: the predicted class (positive when ``probability`` >= the bundle's threshold).
        probability: the ensemble's probability of the positive class (``class_names[1]``).
        class_names: [negative, positive].
        visits: the order values of the visits read (the last ``max_visits``).
        attention: the weight of each of those visits in the subject's pooled representation (sums to 1).
        member_probabilities: each member's probability.
    """

    task = "sequence"
    subject: str
    label: str
    probability: float
    class_names: list[str]
    visits: list[str] = field(default_factory=list)
    attention: list[float] = field(default_factory=list)
    member_probabilities: list[float] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "label": self.label,
            "probability": self.probability,
            "probabilities": {
                self.class_names[0]: round(1 - self.probability, 6),
                self.class_names[1]: self.probability,
            },
            "member_probabilities": self.member_probabilities,
            "attention": [{"visit": v, "weight": w} for v, w in zip(self.visits, self.attention, strict=True)],
        }

    def table_row(self) -> dict[str, Any]:
        top = int(np.argmax(self.attention)) if self.attention else None
        return {
            "input": self.source,
            "subject": self.subject,
            "label": self.label,
            "probability": self.probability,
            "visits": len(self.visits),
            "most_attended_visit": self.visits[top] if top is not None else "",
        }


def read_table(bundle_plan: Any, item: Any, root: Path | None = None) -> VisitTable:
    """A table of visits to predict: a :class:`VisitTable` as given, or a CSV (read or not yet) grouped by the
    plan's subject and order columns, with its feature columns checked; ``root`` is the bundle's folder (the copies
    of its image encoders)."""
    if isinstance(item, VisitTable):
        return item
    raw = item if isinstance(item, RawTable) else read_raw(Path(item))
    s = bundle_plan.sequence
    for image in s.images:
        raw = embed_images(raw, image, root)
    return group_visits(raw, s.subject, s.order, [f.name for f in s.features], numeric_order=s.order_kind == "number")


def embed_images(raw: RawTable, image: ImageColumn, root: Path | None = None) -> RawTable:
    """``raw`` with the embedding features of an image column: as given when the table holds them already (a
    dataset's ``visits.csv``), otherwise computed from its images with the plan's encoder (the same weights: their
    SHA-256 is checked).

    Raises:
        InputError: naming the table when it has neither the features nor the image column, the encoder when its
            weights changed, or the image that is missing.
    """
    from medlens.data.importers.visits import embed_column

    if all(name in raw.header for name in image.features):
        return raw
    if image.column not in raw.header:
        raise InputError(raw.source, f"no column {image.column!r} of images (the model reads their embeddings)")
    encoder = frozen_encoder(image, root)
    rows = [(line, dict(row)) for line, row in raw.rows]
    embed_column(Path(raw.source), rows, image.column, encoder, None)
    return RawTable(raw.source, [*raw.header, *image.features], rows, dict(raw.meta))


ENCODERS_FOLDER = "encoders"  # a bundle's copies of its image encoders, one folder per image column
_ENCODERS: dict[tuple[str, str], ImageEncoder] = {}


def frozen_encoder(image: ImageColumn, root: Path | None = None) -> ImageEncoder:
    """The encoder an image column was embedded with, loaded once per process: the bundle's copy (``root``), or
    the folder the plan names (a run's plan before its bundle is written).

    Raises:
        InputError: naming the encoder when it is gone or its weights are no longer the ones the model learned from.
    """
    from medlens.models.image_encoder import load_encoder

    kept = root / ENCODERS_FOLDER / image.column if root is not None else None
    where = str(kept) if kept is not None and kept.is_dir() else image.encoder
    key = (where, image.digest)
    if key not in _ENCODERS:
        encoder = load_encoder(where)
        if encoder.digest != image.digest:
            raise InputError(
                where,
                f"the encoder's weights changed since the model learned from its embeddings (SHA-256 "
                f"{encoder.digest[:12]}..., expected {image.digest[:12]}...)",
            )
        _ENCODERS[key] = encoder
    return _ENCODERS[key]


@torch.inference_mode()
def member_outputs(bundle: Bundle, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member's probabilities ``(M, N)`` and attention ``(M, N, V)``."""
    probabilities, attentions = [], []
    xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
    for net in bundle.networks():
        logit, attention = net(xt, mt)
        probabilities.append(torch.sigmoid(logit).numpy())
        attentions.append(attention.numpy())
    return np.stack(probabilities), np.stack(attentions)


def predict_tables(bundle: Bundle, tables: Sequence[VisitTable]) -> list[SequencePrediction]:
    """Predict every subject of every table."""
    s = bundle.plan.sequence  # type: ignore[attr-defined]
    threshold = 0.5 if bundle.threshold is None else bundle.threshold
    out = []
    for table in tables:
        if not table.subjects:
            raise InputError(table.source, "no subjects")
        names = list(table.subjects)
        x, mask, orders = encode_subjects(table, s, names)
        probabilities, attentions = member_outputs(bundle, x, mask)
        for i, subject in enumerate(names):
            n = int(mask[i].sum())
            dropped = len(table.subjects[subject]) - n
            p = float(probabilities[:, i].mean())
            out.append(
                SequencePrediction(
                    model=bundle.name,
                    source=table.source,
                    flags=[f"only the last {n} of {n + dropped} visits read (the model's max_visits)"]
                    if dropped
                    else [],
                    subject=subject,
                    label=bundle.class_names[int(p >= threshold)],
                    probability=round(p, 6),
                    class_names=list(bundle.class_names),
                    visits=orders[i],
                    attention=[round(float(w), 6) for w in attentions[:, i, :n].mean(axis=0)],
                    member_probabilities=[round(float(v), 6) for v in probabilities[:, i]],
                )
            )
    return out


def write_attention(folder: Path, predictions: Sequence[Prediction]) -> None:
    """``attention.csv``: one row per subject and visit with its attention weight."""
    rows = [
        {"subject": p.subject, "visit": v, "position": k, "attention": w, "probability": p.probability}
        for p in predictions
        if isinstance(p, SequencePrediction)
        for k, (v, w) in enumerate(zip(p.visits, p.attention, strict=True))
    ]
    if rows:
        write_table(folder / "attention.csv", rows)
