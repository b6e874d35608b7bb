"""A classification in the report's vocabulary: each class's probability, the predicted class with the rule that
chose it, and the referral flag when the prediction's uncertainty carries one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlens.core.findings import referral_of, rounded, uncertainty_of
from medlens.tasks.classification.prediction import ClassificationPrediction

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


def classification_findings(prediction: ClassificationPrediction, bundle: Bundle) -> list[dict[str, Any]]:
    """``probability`` per class, ``predicted_class`` (with ``positive_class`` for a binary operating threshold)
    and ``referral`` when the prediction's uncertainty says whether to refer."""
    items: list[dict[str, Any]] = [
        {"kind": "probability", "class": name, "probability": rounded(p)}
        for name, p in prediction.probabilities.items()
    ]
    chosen: dict[str, Any] = {"kind": "predicted_class", "label": prediction.label, "threshold": None}
    if prediction.threshold is not None:
        chosen["threshold"] = rounded(prediction.threshold)
    names = list(prediction.probabilities)
    if prediction.threshold is not None and not isinstance(prediction.label, list) and len(names) == 2:
        chosen["positive_class"] = names[1]  # binary: the threshold applies to the second class's probability
    items.append(chosen)
    refer = referral_of(uncertainty_of(prediction))
    if refer is not None:
        items.append({"kind": "referral", "refer": refer})
    return items
