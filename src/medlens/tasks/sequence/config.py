"""The sequence section of the plan (``plan.sequence``): the visit table's columns, each feature's encoding fitted
on the training split, and the transformer's size."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medlens.training.plan import Plan, Section


class Feature(Section):
    """One column of the visit table and how it is encoded (statistics of the training split's visits)."""

    name: str
    kind: Literal["number", "category"]
    mean: float = Field(0.0, description="number: the training visits' mean, subtracted")
    sd: float = Field(1.0, gt=0, description="number: the training visits' standard deviation, divided by")
    levels: list[str] = Field(default_factory=list, description="category: the training levels, one-hot encoded")
    missing_indicator: bool = Field(
        False,
        description="a 0/1 column 'missing' is added (the training split had missing values); a missing "
        "number is imputed with the mean (0 after standardising), a missing or unseen category is all zeros",
    )

    @property
    def width(self) -> int:
        """Columns this feature takes in the encoded visit."""
        return (1 if self.kind == "number" else len(self.levels)) + int(self.missing_indicator)


class ImageColumn(Section):
    """A column of image paths whose images a frozen encoder turned into number features (``features``, each
    standardised like any number); see :mod:`medlens.models.image_encoder`."""

    column: str
    encoder: str = Field(description="the encoder's folder (a medlens run or bundle, or a 'medlens pretrain' folder)")
    kind: Literal["bundle", "pretrain"]
    digest: str = Field(description="SHA-256 of the encoder's weights file; prediction refuses other weights")
    dim: int = Field(ge=1)
    description: str = ""
    features: list[str] = Field(description="the embedding's feature names, COLUMN:e000 ... (in sequence.features)")


class SequenceOptions(Section):
    """The visit table's columns and the network reading it."""

    subject: str = Field(description="the column of subject IDs")
    order: str = Field(description="the column ordering a subject's visits")
    order_kind: Literal["number", "text"] = "number"
    target: str = Field(description="the outcome's column (the dataset's; not read at prediction)")
    features: list[Feature]
    images: list[ImageColumn] = Field(
        default_factory=list, description="image columns embedded by a frozen encoder (their features are numbers)"
    )
    max_visits: int = Field(8, ge=1, le=512, description="visits read per subject: the last ones when there are more")
    d_model: int = Field(32, ge=4, le=1024, description="width of the transformer")
    heads: int = Field(4, ge=1, le=64)
    layers: int = Field(2, ge=1, le=24)
    dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["attention"] = Field(
        "attention", description="visits pooled by a learned attention (softmax over a subject's real visits)"
    )

    @property
    def width(self) -> int:
        """Columns of one encoded visit."""
        return sum(f.width for f in self.features)

    @model_validator(mode="after")
    def _check(self) -> SequenceOptions:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        if not self.features:
            raise ValueError("a sequence plan needs at least one feature")
        return self


class SequencePlan(Plan):
    """A sequence plan: the shared sections (``data.input_size`` is [max_visits, encoded width]) and ``sequence``."""

    task: Literal["sequence"]
    sequence: SequenceOptions

    @model_validator(mode="after")
    def _check_classes(self) -> SequencePlan:
        if len(self.class_names) != 2:
            raise ValueError(f"a sequence plan predicts a binary outcome (two class_names), got {self.class_names}")
        return self
