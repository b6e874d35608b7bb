"""A trained classifier's calibration and uncertainty: the temperature, referral threshold and conformal quantile
chosen on validation and stored in the bundle; the temperature applied per member before averaging; the referral
flag; test-time augmentation as a source of disagreement; metrics.json's calibration, AURC and conformal figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.special import softmax

from medlens.cli.main import main
from medlens.data.dataset import load_dataset
from medlens.metrics.conformal import conformal_quantile, lac_scores
from medlens.tasks.base import load_bundle


def _bundle_copy(run: Path, tmp_path: Path, **calibration: object) -> Path:
    """A copy of the run's bundle with ``calibration:`` keys replaced (None removes the whole mapping)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(run / "run" / "bundle", bundle)
    spec = yaml.safe_load((bundle / "bundle.yaml").read_text())
    plan_update = calibration.pop("plan", None)
    if isinstance(plan_update, dict):
        spec["plan"]["augment"].update(plan_update)
    if calibration.pop("drop", False):
        spec.pop("calibration")
    else:
        spec["calibration"].update(calibration)
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return bundle


def _test_images(run: Path) -> list[Path]:
    ds = load_dataset(run / "ds")
    return [ds.image_paths(c)[0] for c in ds.split("test")]


def test_validation_choices_are_in_the_bundle_and_lower_the_nll(pneumonia_run: Path) -> None:
    spec = yaml.safe_load((pneumonia_run / "run" / "bundle" / "bundle.yaml").read_text())
    chosen, val = spec["calibration"], spec["info"]["calibration_on_validation"]
    assert 0.05 <= chosen["temperature"] <= 20 and chosen["conformal_level"] == 0.9
    assert chosen["referral_target_accuracy"] == 0.95 and 0.0 <= chosen["referral_threshold"] <= 1.0
    assert val["nll"] <= val["nll_uncalibrated"] + 1e-9  # the temperature minimises the validation NLL
    summary = json.loads((pneumonia_run / "run" / "train_summary.json").read_text())
    assert summary["temperature"] == chosen["temperature"]
    card = (pneumonia_run / "run" / "bundle" / "model_card.md").read_text()
    assert "Temperature scaling" in card and "Referral" in card and "Conformal prediction sets at 90%" in card


def test_the_temperature_divides_each_members_logits_before_averaging(pneumonia_run: Path, tmp_path: Path) -> None:
    import torch

    from medlens.io import read_image
    from medlens.training.images import normalize, to_input

    bundle = load_bundle(_bundle_copy(pneumonia_run, tmp_path, temperature=2.5))
    path = _test_images(pneumonia_run)[0]
    x = torch.from_numpy(to_input(read_image(path), bundle.plan.data)[None])
    with torch.inference_mode():
        logits = [net(normalize(x, bundle.plan.data)).numpy()[0] for net in bundle.networks()]
    expected = np.mean([softmax(z / 2.5) for z in logits], axis=0)
    prediction = bundle.predict(path)
    assert [prediction.probabilities[n] for n in bundle.class_names] == pytest.approx(expected, abs=1e-5)  # type: ignore[attr-defined]
    raw = np.mean([softmax(z) for z in logits], axis=0)
    assert list(prediction.uncalibrated_probabilities.values()) == pytest.approx(raw, abs=1e-5)  # type: ignore[attr-defined]
    assert prediction.to_dict()["uncertainty"]["temperature"] == 2.5


def test_referral_flags_the_low_confidence_predictions_only(pneumonia_run: Path, tmp_path: Path) -> None:
    images = _test_images(pneumonia_run)[:16]
    plain = [load_bundle(pneumonia_run / "run").predict(p) for p in images]
    confidence = np.array([p.confidence for p in plain])  # type: ignore[attr-defined]
    cut = float(np.median(confidence))
    bundle = _bundle_copy(pneumonia_run, tmp_path, referral_threshold=cut)
    out = tmp_path / "predictions"
    assert main(["-q", "predict", str(bundle), *map(str, images), "--out", str(out)]) == 0
    written = [json.loads((out / f"{p.name.split('.')[0]}.json").read_text()) for p in images]
    flags = np.array([w["refer"] for w in written])
    shown = np.array([w["uncertainty"]["confidence"] for w in written])
    assert flags.any() and not flags.all()
    assert np.array_equal(flags, shown < cut)  # referred exactly when less confident than the cut
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["refer"] == "True" for r in rows] == flags.tolist()
    for w in written:  # entropy and a set of classes come with every prediction
        assert 0 <= w["uncertainty"]["entropy"] <= np.log(2) + 1e-6 and isinstance(w["prediction_set"], list)
    refer_all = load_bundle(_bundle_copy(pneumonia_run, tmp_path / "all", referral_threshold=1.0))
    assert all(refer_all.predict(p).refer for p in images[:3])  # type: ignore[attr-defined]


def test_tta_mirrors_count_as_members_and_disagree(pneumonia_run: Path, tmp_path: Path) -> None:
    bundle = load_bundle(_bundle_copy(pneumonia_run, tmp_path, plan={"flip_axes": [1]}))
    path = _test_images(pneumonia_run)[1]
    plain, mirrored = bundle.predict(path), bundle.predict(path, tta=True)
    members = len(bundle.members)
    assert plain.passes == members and mirrored.passes == 2 * members  # type: ignore[attr-defined]
    assert mirrored.member_disagreement > 0  # type: ignore[attr-defined]
    assert mirrored.probabilities != plain.probabilities  # type: ignore[attr-defined]


def test_an_older_bundle_predicts_as_before_and_a_bad_value_is_named(pneumonia_run: Path, tmp_path: Path) -> None:
    old = load_bundle(_bundle_copy(pneumonia_run, tmp_path / "old", drop=True))
    prediction = old.predict(_test_images(pneumonia_run)[0])
    assert prediction.temperature == 1.0 and not prediction.refer and prediction.prediction_set is None  # type: ignore[attr-defined]
    assert prediction.probabilities == prediction.uncalibrated_probabilities  # type: ignore[attr-defined]
    bad = _bundle_copy(pneumonia_run, tmp_path / "bad", temperature=-1)
    assert main(["predict", str(bad), str(_test_images(pneumonia_run)[0]), "--out", str(tmp_path / "p")]) == 1


def test_evaluate_reports_calibration_aurc_referral_and_conformal(pneumonia_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", str(pneumonia_run / "run"), "--out", str(out), "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("ece", "ece_uncalibrated", "aurc", "conformal_coverage", "conformal_set_size"):
        lo, hi = m[key]["ci95"]
        assert lo <= m[key]["value"] <= hi, key
    bundle = load_bundle(pneumonia_run / "run")
    assert m["temperature"] == bundle.calibration["temperature"] and m["conformal_level"] == 0.9
    assert "BCa" in m["interval_method"] and "percentile" in m["interval_method"]
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    target = np.array([int(r["target"]) for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    prob = np.array([[float(r["p_normal"]), float(r["p_pneumonia"])] for r in rows])
    predicted = (prob[:, 1] >= m["operating_point"]["threshold"]).astype(int)
    error = (predicted != target).astype(float)
    order = np.argsort(-confidence, kind="stable")  # AURC by hand: mean risk over coverages 1/N .. N/N
    by_hand = np.mean(np.cumsum(error[order]) / np.arange(1, len(rows) + 1))
    assert m["aurc"]["value"] == pytest.approx(by_hand, abs=1e-3)
    covered = [names.split(";").count(["normal", "pneumonia"][t]) for names, t in
               zip((r["prediction_set"] for r in rows), target, strict=True)]  # fmt: skip
    assert m["conformal_coverage"]["value"] == pytest.approx(np.mean(covered))
    assert m["referral"]["n_referred"] == sum(r["refer"] == "1" for r in rows)
    html = (out / "report.html").read_text()
    assert "Calibration and uncertainty" in html and (out / "risk_coverage.png").is_file()


def test_the_conformal_quantile_is_the_validation_quantile(pneumonia_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "val"
    assert (
        main(["-q", "evaluate", str(pneumonia_run / "run"), "--split", "val", "--out", str(out), "--bootstrap", "0"])
        == 0
    )
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    prob = np.array([[float(r["p_normal"]), float(r["p_pneumonia"])] for r in rows])
    target = np.array([int(r["target"]) for r in rows])
    expected = conformal_quantile(lac_scores(prob, target), 0.9)
    assert load_bundle(pneumonia_run / "run").calibration["conformal_quantile"] == pytest.approx(expected, abs=1e-5)
    m = json.loads((out / "metrics.json").read_text())
    assert m["conformal_coverage"]["value"] >= 0.9  # on the cases it was calibrated on, at least the level


@pytest.mark.parametrize(("task", "k"), [("binary", 2), ("multiclass", 4), ("multilabel", 3)])
def test_choices_and_figures_for_every_kind_of_classifier(task: str, k: int) -> None:
    """On the validation cases themselves the referral reaches its target and the sets their level; multi-label
    gets calibration and selective figures, and no sets."""
    from medlens.metrics.temperature import scaled_probabilities
    from medlens.tasks.classification.metrics import choose_threshold
    from medlens.tasks.classification.uncertainty import (
        ClassificationCalibration,
        choose_on_validation,
        uncertainty_metrics,
    )

    rng = np.random.default_rng(0)
    n, multilabel = 400, task == "multilabel"
    true_logits = rng.normal(size=(n, k)) * 2
    if multilabel:
        y = (rng.random((n, k)) < 1 / (1 + np.exp(-true_logits))).astype(int)
    else:
        p = softmax(true_logits, axis=1)
        y = np.minimum((p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    logits = np.stack([2.0 * true_logits + rng.normal(0, 0.3, (n, k)) for _ in range(2)])  # 2 over-confident members
    chosen = choose_on_validation(
        logits, np.ones((2, n), bool), y, task, temperature_scaling=True, choose_threshold=choose_threshold,
        target_accuracy=0.9, level=0.9,
    )  # fmt: skip
    assert 1.5 < chosen["temperature"] < 2.6  # the members were made about twice as sure as the truth
    assert chosen["validation"]["ece"] < chosen["validation"]["ece_uncalibrated"]
    calibration = ClassificationCalibration(
        temperature=chosen["temperature"], referral_threshold=chosen["referral_threshold"],
        referral_target_accuracy=0.9, conformal_level=0.9, conformal_quantile=chosen["conformal_quantile"],
    )  # fmt: skip
    prob = scaled_probabilities(logits, chosen["temperature"], multilabel=multilabel).mean(axis=0)
    raw = scaled_probabilities(logits, 1.0, multilabel=multilabel).mean(axis=0)
    m = uncertainty_metrics(
        y, prob, raw, task=task, threshold=chosen["threshold"], calibration=calibration,
        class_names=[f"c{i}" for i in range(k)], groups=None, n_bootstrap=50,
    )  # fmt: skip
    assert m["referral"]["accuracy_of_rest"]["value"] >= 0.9
    assert 0 < m["aurc"]["value"] < m["aurc"]["random_ranking"]  # confidence ranks the errors
    if multilabel:
        assert "conformal_coverage" not in m and chosen["conformal_quantile"] is None
    else:
        assert m["conformal_coverage"]["value"] >= 0.9 and sum(m["conformal_set_sizes"].values()) == n
