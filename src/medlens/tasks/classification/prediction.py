"""A classifier's answer for one image: probability per class, the label at the operating threshold, and how sure
it is (entropy, member disagreement, whether a person should read it, the conformal prediction set)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.image import Image
from medlens.core.prediction import Prediction, SaveOptions
from medlens.tasks.classification.config import plan_of

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


@dataclass(kw_only=True)
class ClassificationPrediction(Prediction):
    """Probabilities per class (the ensemble mean, calibrated), the predicted label, and its uncertainty.

    Attributes:
        probabilities: class name to probability (softmax; per label sigmoid for multi-label), after the bundle's
            temperature (``uncertainty.temperature``).
        label: the predicted class (binary: at the operating threshold; multiclass: arg-max), or the list of
            labels at or above the threshold for multi-label.
        threshold: the operating threshold used (None for arg-max).
        refer: True when ``confidence`` is below the referral threshold chosen on validation for the bundle's
            target accuracy: a person should read this case. False when the bundle has no referral threshold
            (made before referral existed).
        prediction_set: the conformal prediction set at ``uncertainty.conformal_level``: the classes not ruled
            out (the true class is in it for that share of cases). Empty means no class fits well; several mean
            the model cannot tell them apart. None for multi-label and for bundles without a conformal quantile.
        confidence: the probability of the label given (multi-label: the least sure label's).
        entropy: entropy of ``probabilities`` in nats (0 sure, ln K uniform; multi-label: mean binary entropy).
        member_disagreement: mutual information between the prediction and the member (nats, >= 0): how much
            the members (seeds or folds, and with ``tta`` the mirrored passes) disagree; 0 with one pass.
            ``confidence``, ``entropy`` and ``member_disagreement`` are None in a prediction made without them
            (by hand, not by a bundle): unmeasured is not certain, and ``uncertainty`` is then null.
        passes: the members times test-time passes averaged.
        temperature: the temperature that divided every member's logits (1: none).
        referral_threshold: the confidence cut chosen on validation (1.0 refers every case), or None.
        conformal_level: the coverage the prediction sets aim at (e.g. 0.9), or None.
        member_probabilities: each pass's calibrated probabilities, (passes, classes).
        uncalibrated_probabilities: the members' mean without the temperature (for calibration figures).
        slice_attention: for networks that read a volume slice by slice and expose their attention (see
            :mod:`medlens.models.slice_attention`): the members' mean weight of every slice of the network input
            along ``slice_axis`` (summing to 1); None for other networks.
        slice_axis: the spatial axis of the network input the slices are taken along, with ``slice_attention``.
        top_slices: the most attended slices of the network input (raw units) by slice index, for pictures.

    ``to_dict()`` gives ``refer`` and ``prediction_set`` at the top level, the numbers under ``uncertainty``.
    """

    task = "classification"
    probabilities: dict[str, float]
    label: str | list[str]
    threshold: float | None = None
    refer: bool = False
    prediction_set: list[str] | None = None
    confidence: float | None = None
    entropy: float | None = None
    member_disagreement: float | None = None
    passes: int = 1
    temperature: float = 1.0
    referral_threshold: float | None = None
    conformal_level: float | None = None
    member_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    uncalibrated_probabilities: dict[str, float] = field(default_factory=dict, repr=False)
    slice_attention: list[float] | None = None
    slice_axis: int | None = None
    top_slices: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def fields(self) -> dict[str, Any]:
        attention = (
            {}
            if self.slice_attention is None
            else {"slice_attention": self.slice_attention, "slice_axis": self.slice_axis}
        )
        return {
            "probabilities": self.probabilities,
            "label": self.label,
            "threshold": self.threshold,
            "refer": self.refer,
            "prediction_set": self.prediction_set,
            "uncertainty": None
            if self.entropy is None
            else {
                "confidence": self.confidence,
                "entropy": self.entropy,
                "member_disagreement": self.member_disagreement,
                "passes": self.passes,
                "temperature": self.temperature,
                "referral_threshold": self.referral_threshold,
                "conformal_level": self.conformal_level,
            },
            **attention,
        }

    def table_row(self) -> dict[str, Any]:
        label = ";".join(self.label) if isinstance(self.label, list) else self.label
        row = {"input": self.source, "prediction": label, **{f"p_{k}": v for k, v in self.probabilities.items()}}
        row |= {"refer": self.refer, "confidence": self.confidence, "entropy": self.entropy}
        if self.prediction_set is not None:
            row["prediction_set"] = ";".join(self.prediction_set)
        if self.slice_attention is not None:
            row["most_attended_slice"] = int(np.argmax(self.slice_attention))
        return row

    def save_files(self, folder: Path, stem: str, options: SaveOptions) -> dict[str, str]:
        """With slice attention and pictures: ``<stem>_slice_attention.png``, the weight per slice beside the most
        attended slices (role ``explanation_slice_attention``: the clinical report lists it among the explanation
        images)."""
        if self.slice_attention is None or not options.pictures:
            return {}
        from medlens.reports.attention import slice_attention_png

        name = f"{stem}_slice_attention.png"
        (folder / name).write_bytes(slice_attention_png(self.slice_attention, self.top_slices, self.slice_axis))
        return {"explanation_slice_attention": name}


def metric_task(class_names: Sequence[str], multilabel: bool) -> str:
    """The metrics' name for a classifier: binary, multiclass or multilabel."""
    if multilabel:
        return "multilabel"
    return "binary" if len(class_names) == 2 else "multiclass"


def tta_flips(bundle: Bundle, tta: bool) -> list[tuple[int, ...]]:
    """The mirrorings of a prediction pass: none, or with ``tta`` every combination of ``augment.flip_axes``
    (the flips training drew, so the mirrored images are ones the model learned from)."""
    if not tta:
        return [()]
    axes = [a + 2 for a in bundle.plan.augment.flip_axes]  # (N, C, *spatial): spatial axis a is tensor axis a + 2
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


@torch.inference_mode()
def member_logits(bundle: Bundle, x: torch.Tensor, batch_size: int = 64, *, tta: bool = False) -> np.ndarray:
    """Each pass's logits (P, N, K) for prepared, not yet normalised inputs (N, C, *size): every member, and with
    ``tta`` every mirroring of :func:`tta_flips` (P = members x mirrorings)."""
    from medlens.training.images import normalize

    out = []
    for net in bundle.networks():
        for flip in tta_flips(bundle, tta):
            chunks = []
            for i in range(0, len(x), batch_size):
                xi = normalize(x[i : i + batch_size], bundle.plan.data)
                chunks.append(net(torch.flip(xi, flip) if flip else xi).float())
            out.append(torch.cat(chunks).numpy())
    return np.stack(out)


def member_probabilities(bundle: Bundle, x: torch.Tensor, batch_size: int = 64, *, tta: bool = False) -> np.ndarray:
    """Each member's calibrated probabilities (P, N, K) (the bundle's temperature applied) for prepared, not yet
    normalised inputs (N, C, *size)."""
    from medlens.metrics.temperature import scaled_probabilities
    from medlens.tasks.classification.uncertainty import calibration_of

    logits = member_logits(bundle, x, batch_size, tta=tta)
    t = calibration_of(bundle).temperature
    return scaled_probabilities(logits, t, multilabel=plan_of(bundle).multilabel).astype(np.float32)


def predictions_from_probabilities(
    bundle: Bundle,
    per_member: np.ndarray,
    sources: Sequence[str],
    flags: Sequence[list[str]],
    uncalibrated: np.ndarray | None = None,
) -> list[ClassificationPrediction]:
    """Turn passes' calibrated probabilities (P, N, K) into one prediction per input; ``uncalibrated`` (N, K) is
    the members' mean without the temperature (the calibrated mean when not given)."""
    from medlens.metrics.conformal import lac_sets
    from medlens.metrics.selective import refers
    from medlens.tasks.classification.metrics import predict_labels
    from medlens.tasks.classification.uncertainty import (
        calibration_of,
        confidence_of,
        entropy,
        member_disagreement,
    )

    names = bundle.class_names
    multilabel = plan_of(bundle).multilabel
    task = metric_task(names, multilabel)
    calibration = calibration_of(bundle)
    prob = per_member.mean(axis=0)  # (N, K)
    threshold = bundle.threshold if (task == "binary" and bundle.threshold is not None) else 0.5
    labels = predict_labels(prob[:, 1] if task == "binary" else prob, task, threshold)
    confidence = confidence_of(prob, task, threshold if task == "binary" else None)
    refer = refers(confidence, calibration.referral_threshold)
    spread, disagreement = entropy(prob, multilabel), member_disagreement(per_member, multilabel)
    quantile = None if multilabel else calibration.conformal_quantile
    sets = lac_sets(prob, quantile) if quantile is not None else None
    raw = prob if uncalibrated is None else uncalibrated
    out = []
    for i, (source, p, label) in enumerate(zip(sources, prob, labels, strict=True)):
        chosen: str | list[str] = (
            [names[j] for j, flag in enumerate(np.atleast_1d(label)) if flag] if multilabel else names[int(label)]
        )
        out.append(
            ClassificationPrediction(
                model=bundle.name,
                source=source,
                flags=list(flags[i]),
                probabilities={n: round(float(v), 6) for n, v in zip(names, p, strict=True)},
                label=chosen,
                threshold=None if task == "multiclass" else threshold,
                refer=bool(refer[i]),
                prediction_set=None if sets is None else [n for n, s in zip(names, sets[i], strict=True) if s],
                confidence=round(float(confidence[i]), 6),
                entropy=round(float(spread[i]), 6),
                member_disagreement=round(float(disagreement[i]), 6),
                passes=int(per_member.shape[0]),
                temperature=calibration.temperature,
                referral_threshold=calibration.referral_threshold,
                conformal_level=None if sets is None else calibration.conformal_level,
                member_probabilities=per_member[:, i],
                uncalibrated_probabilities={n: round(float(v), 6) for n, v in zip(names, raw[i], strict=True)},
            )
        )
    return out


def predict_images(bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[ClassificationPrediction]:
    """Classify images given in their own geometry (resized and normalised as the plan says); with ``tta`` the
    mirrorings of ``augment.flip_axes`` are averaged too (and count in the member disagreement)."""
    from medlens.metrics.temperature import scaled_probabilities
    from medlens.tasks.classification.uncertainty import calibration_of
    from medlens.training.images import to_input

    arrays = [to_input(image, bundle.plan.data) for image in images]
    logits = member_logits(bundle, torch.from_numpy(np.stack(arrays)), tta=tta)  # (P, N, K)
    multilabel = plan_of(bundle).multilabel
    per_member = scaled_probabilities(logits, calibration_of(bundle).temperature, multilabel=multilabel)
    uncalibrated = scaled_probabilities(logits, 1.0, multilabel=multilabel).mean(axis=0)
    sources = [str(image.meta.get("source", "<memory>")) for image in images]
    flags = [list(image.meta.get("flags", [])) for image in images]
    predictions = predictions_from_probabilities(bundle, per_member, sources, flags, uncalibrated)
    add_slice_attention(bundle, torch.from_numpy(np.stack(arrays)), predictions)
    return predictions


#: most attended slices kept with a prediction for its picture
TOP_SLICES = 3


def add_slice_attention(bundle: Bundle, x: torch.Tensor, predictions: Sequence[ClassificationPrediction]) -> None:
    """Give each prediction its members' attention per slice, when the networks expose one (else nothing), with its
    most attended slices; ``x``: the prepared, not yet normalised inputs ``(N, C, *size)`` of the predictions."""
    from medlens.models.slice_attention import ensemble_slice_attention
    from medlens.training.images import normalize

    found = ensemble_slice_attention(bundle.networks(), normalize(x, bundle.plan.data))
    if found is None:
        return
    axis, weights = found  # (N, S)
    for prediction, volume, row in zip(predictions, x.numpy(), weights, strict=True):
        prediction.slice_attention = [round(float(w), 6) for w in row]
        prediction.slice_axis = axis
        top = np.argsort(-row, kind="stable")[:TOP_SLICES]
        prediction.top_slices = {int(i): np.take(volume[0], int(i), axis=axis) for i in top}  # (h, w) channel 0
