"""Classification findings: every class's probability, the predicted class with the rule that chose it, and the
referral flag when the prediction's uncertainty carries one (calibration's field, read through one accessor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.core.findings import KINDS, REFERRAL_KEY, uncertainty_of
from medlens.tasks import get_task
from medlens.tasks.classification.prediction import ClassificationPrediction


def _findings(prediction: ClassificationPrediction) -> list[dict]:
    return get_task("classification").findings(prediction, None)  # type: ignore[arg-type]


def test_binary_names_the_class_its_threshold_applies_to() -> None:
    p = ClassificationPrediction(
        model="m", source="x", probabilities={"normal": 0.2174, "pneumonia": 0.7826}, label="pneumonia",
        threshold=0.73334151,
    )  # fmt: skip
    findings = _findings(p)
    assert [f["kind"] for f in findings] == ["probability", "probability", "predicted_class"]
    assert {f["class"]: f["probability"] for f in findings[:2]} == p.probabilities
    chosen = {"kind": "predicted_class", "label": "pneumonia", "threshold": 0.7333, "positive_class": "pneumonia"}
    assert findings[2] == chosen
    assert uncertainty_of(p) is None  # no uncertainty without calibration's fields


def test_multiclass_is_arg_max_and_multilabel_lists_labels() -> None:
    multi = ClassificationPrediction(model="m", source="x", probabilities={"a": 0.1, "b": 0.7, "c": 0.2}, label="b")
    assert _findings(multi)[-1] == {"kind": "predicted_class", "label": "b", "threshold": None}
    labels = ClassificationPrediction(
        model="m", source="x", probabilities={"a": 0.9, "b": 0.6, "c": 0.1}, label=["a", "b"], threshold=0.5
    )
    assert _findings(labels)[-1] == {"kind": "predicted_class", "label": ["a", "b"], "threshold": 0.5}


def test_referral_comes_from_the_predictions_uncertainty() -> None:
    p = ClassificationPrediction(model="m", source="x", probabilities={"no": 0.45, "yes": 0.55}, label="yes",
                                 threshold=0.5, member_probabilities=np.array([[0.2, 0.8], [0.7, 0.3]]))  # fmt: skip
    p.uncertainty = {"entropy": 0.6881, REFERRAL_KEY: True, "conformal_set": ["no", "yes"]}  # type: ignore[attr-defined]
    findings = _findings(p)
    assert findings[-1] == {"kind": "referral", "refer": True}
    assert all(f["kind"] in KINDS for f in findings)
    assert uncertainty_of(p) == {"entropy": 0.6881, "refer": True, "conformal_set": ["no", "yes"]}


def test_findings_of_a_trained_model(pneumonia_run: Path) -> None:
    from medlens import load_bundle

    bundle = load_bundle(pneumonia_run / "run")
    picture = sorted((pneumonia_run / "ds" / "images").iterdir())[0]
    prediction = bundle.predict(picture)
    findings = bundle.task.findings(prediction, bundle)
    assert [f["class"] for f in findings if f["kind"] == "probability"] == ["normal", "pneumonia"]
    assert abs(sum(f["probability"] for f in findings if f["kind"] == "probability") - 1) < 1e-3
    chosen = next(f for f in findings if f["kind"] == "predicted_class")
    p = next(f["probability"] for f in findings if f["kind"] == "probability" and f["class"] == "pneumonia")
    assert chosen["label"] == ("pneumonia" if p >= chosen["threshold"] else "normal")
