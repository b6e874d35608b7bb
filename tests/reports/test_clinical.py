"""Clinical reports (``predict --report``): the JSON's keys per task, texts in English and Chinese generated from the
JSON alone (every number in a text is a number of the JSON; the decision-support disclaimer opens each text), the
languages chosen with ``--lang``, the model's validated performance once ``evaluate --update-card`` recorded it, and
uncertainty and explanations read from stand-ins of what calibration and explanation will provide."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from medlens.cli.main import main
from medlens.reports.clinical import build_report, render_text, sentences
from report_texts import numbers_not_in_report

pytestmark = pytest.mark.integration
REPORT_KEYS = {"format", "generated", "input", "model", "findings", "uncertainty", "performance", "explanation"}
REPORT_KEYS |= {"files"}


def predict_report(run: Path, inputs: list[Path], out: Path, *flags: str) -> Path:
    assert main(["-q", "predict", str(run), *map(str, inputs), "--out", str(out), "--report", *flags]) == 0
    return out / "reports"


def check_texts(folder: Path, stem: str, languages: tuple[str, ...] = ("en", "zh")) -> dict:
    """The report's JSON, after checking its texts: disclaimer first, every number from the JSON."""
    report = json.loads((folder / f"{stem}.json").read_text())
    assert set(report) == REPORT_KEYS and report["format"] == "medlens-report/1"
    for language in languages:
        text = (folder / f"{stem}.{language}.txt").read_text()
        assert text.startswith(sentences(language)["disclaimer"])
        assert numbers_not_in_report(text, report, language) == [], language
    assert sorted(p.name for p in folder.glob(f"{stem}.*.txt")) == sorted(f"{stem}.{lang}.txt" for lang in languages)
    return report


def test_classification_report(pneumonia_run: Path, tmp_path: Path) -> None:
    picture = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[0]
    folder = predict_report(pneumonia_run / "run", [picture], tmp_path / "out")
    report = check_texts(folder, picture.stem)
    spec = yaml.safe_load((pneumonia_run / "run" / "bundle" / "bundle.yaml").read_text())
    assert report["model"] | {"created": spec["created"]} == report["model"]  # the version is the bundle's
    model = report["model"]
    assert (model["name"], model["task"], model["members"]) == ("run", "classification", 2)
    kinds = [f["kind"] for f in report["findings"]]
    assert kinds == ["probability", "probability", "predicted_class", "referral"]  # the bundle has a referral cut
    predicted = json.loads((tmp_path / "out" / f"{picture.stem}.json").read_text())
    (referral,) = [f for f in report["findings"] if f["kind"] == "referral"]
    assert referral["refer"] is predicted["refer"]
    uncertainty = report["uncertainty"]  # calibration's numbers of this prediction, rounded once
    assert uncertainty["entropy"] == pytest.approx(predicted["uncertainty"]["entropy"], abs=5e-4)
    default = spec["explanation"]["default"]  # chosen at training; no explanation image was asked for here
    assert report["explanation"] == {"method": None, "images": [], "default": default}
    performance = report["performance"]  # never evaluated on held-out data: the validation figure, no interval
    assert performance["source"] == "validation" and performance["n_cases"] == 40
    assert performance["metrics"][0]["name"] == "auc" and performance["metrics"][0]["low"] is None
    english = (folder / f"{picture.stem}.en.txt").read_text()
    for finding in report["findings"][:2]:
        assert f"Probability of {finding['class']}: {finding['probability']:g}" in english
    chinese = (folder / f"{picture.stem}.zh.txt").read_text()
    assert "的概率" in chinese and "分类" in chinese and "结果" in chinese
    for finding in report["findings"][:2]:  # the prediction's probabilities, rounded once for the report
        assert finding["probability"] == pytest.approx(predicted["probabilities"][finding["class"]], abs=5e-5)


def test_segmentation_report_of_one_language(hippo_run: Path, tmp_path: Path) -> None:
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    stem = case.name.removesuffix(".nii.gz")
    folder = predict_report(hippo_run / "run", [case], tmp_path / "out", "--lang", "en")
    report = check_texts(folder, stem, ("en",))
    predicted = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
    volumes = {f["structure"]: f["value"] for f in report["findings"] if f["kind"] == "volume"}
    assert volumes == predicted["volumes_ml"] and report["files"]["mask"] == f"{stem}_mask.nii.gz"
    text = (folder / f"{stem}.en.txt").read_text()
    assert all(f"{name}: volume {value:g} mL" in text for name, value in volumes.items())


def test_detection_report(bccd_run: Path, tmp_path: Path) -> None:
    picture = sorted((bccd_run / "voc" / "JPEGImages").iterdir())[0]
    folder = predict_report(bccd_run / "run", [picture], tmp_path / "out")
    report = check_texts(folder, picture.stem)
    boxes = [f for f in report["findings"] if f["kind"] == "box"]
    counts = {f["class"]: f["count"] for f in report["findings"] if f["kind"] == "box_count"}
    assert boxes and sum(counts.values()) == len(boxes) and {b["unit"] for b in boxes} == {"px"}  # a JPEG has no mm
    assert "pixels" in (folder / f"{picture.stem}.en.txt").read_text()


def test_lang_chooses_the_texts_and_unknown_languages_are_named(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[0]
    run = str(pneumonia_run / "run")
    folder = predict_report(pneumonia_run / "run", [picture], tmp_path / "zh", "--lang", "zh")
    check_texts(folder, picture.stem, ("zh",))
    capsys.readouterr()
    assert main(["-q", "predict", run, str(picture), "--out", str(tmp_path / "fr"), "--report", "--lang", "en,fr"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'fr'" in error and "en, zh" in error and not (tmp_path / "fr").exists()
    assert main(["-q", "predict", run, str(picture), "--out", str(tmp_path / "nolang"), "--lang", "en"]) == 1
    assert "--report" in capsys.readouterr().err  # --lang alone has nothing to choose for
    assert main(["-q", "predict", run, str(picture), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "reports").exists()  # no report unless asked


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_update_card_records_the_held_out_figures_the_reports_quote(pneumonia_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(pneumonia_run / "run", run)  # the shared run is not to be changed
    before = _digest(run / "bundle")
    args = ["-q", "evaluate", str(run), "--dataset", str(pneumonia_run / "ds"), "--bootstrap", "50"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    assert _digest(run / "bundle") == before  # evaluate alone leaves the bundle as it is
    card = (tmp_path / "eval" / "model_card.md").read_text()
    assert "## Held-out performance" in card and "| auc |" in card and "Worst held-out cases" in card
    assert main([*args, "--out", str(tmp_path / "eval2"), "--update-card"]) == 0
    recorded = json.loads((run / "bundle" / "evaluation.json").read_text())
    metrics = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert recorded["metrics"]["auc"] == {"value": metrics["auc"]["value"], "ci95": metrics["auc"]["ci95"]}
    assert recorded["split"] == "test" and recorded["n_cases"] == 40 and len(recorded["worst_cases"]) == 5
    bundle_card = (run / "bundle" / "model_card.md").read_text()
    assert "| auc |" in bundle_card and "Not evaluated on held-out data yet" not in bundle_card

    picture = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[1]
    folder = predict_report(run, [picture], tmp_path / "out")
    report = check_texts(folder, picture.stem)
    performance = report["performance"]
    assert performance["source"] == "held_out" and performance["n_cases"] == 40 and performance["ci_level"] == 95
    auc = next(m for m in performance["metrics"] if m["name"] == "auc")
    assert auc["low"] <= auc["value"] <= auc["high"]
    assert auc["value"] == pytest.approx(metrics["auc"]["value"], rel=1e-3)
    assert (
        f"ROC AUC: {auc['value']:g} (95% CI {auc['low']:g} to {auc['high']:g})"
        in (folder / f"{picture.stem}.en.txt").read_text()
    )


def test_uncertainty_and_explanation_when_present(pneumonia_run: Path, tmp_path: Path) -> None:
    """Stand-ins for calibration's uncertainty on a prediction and explanation's images and default method."""
    from medlens import load_bundle
    from medlens.core.findings import REFERRAL_KEY
    from medlens.training.card import write_model_card

    root = tmp_path / "bundle"
    shutil.copytree(pneumonia_run / "run" / "bundle", root)
    spec = yaml.safe_load((root / "bundle.yaml").read_text())
    spec["explanation"] = {"default": "gradcam", "why": "highest deletion score on validation", "deletion_auc": 0.31}
    spec["calibration"] = {"method": "temperature", "temperature": 1.42, "ece_before": 0.081, "ece_after": 0.032}
    (root / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    bundle = load_bundle(root)
    prediction = bundle.predict(sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[2])
    prediction.uncertainty = {  # type: ignore[attr-defined]
        "entropy": 0.6012, "member_disagreement": 0.0871, REFERRAL_KEY: True, "conformal_set": ["normal", "pneumonia"]
    }  # fmt: skip
    report = build_report(
        prediction, bundle, files={"json": "x.json"}, explanation={"method": "gradcam", "paths": ["x_gradcam.png"]}
    )
    assert report["findings"][-1] == {"kind": "referral", "refer": True}
    assert report["uncertainty"]["entropy"] == 0.6012
    assert report["explanation"] == {"method": "gradcam", "images": ["x_gradcam.png"], "default": "gradcam"}
    for language in ("en", "zh"):
        text = render_text(report, language)
        assert numbers_not_in_report(text, report, language) == []
        assert "x_gradcam.png" in text and "0.6012" in text and "0.0871" in text
    english = render_text(report, "en")
    assert (
        "recommends review by a specialist" in english
        and "Conformal prediction set (the classes not ruled out): normal, pneumonia." in english
    )
    assert "转诊" in render_text(report, "zh")
    card = write_model_card(root).read_text()
    assert "Default explanation: gradcam" in card and "deletion_auc: 0.31" in card
    assert "temperature: 1.42" in card and "ece_after: 0.032" in card


def test_every_kind_and_uncertainty_has_sentences_in_every_language() -> None:
    """A report holding every finding kind and every uncertainty figure calibration gives, in each language: every
    sentence fills, and the texts hold no number the JSON does not."""
    from medlens.core.findings import KINDS
    from medlens.reports.clinical import known_languages

    report = {
        "input": {"source": "/scans/case_7", "flags": ["3 non-finite pixel(s) replaced"]},
        "model": {"name": "run", "task": "classification", "format": "medlens-bundle/1", "created": "2026-01-02"},
        "findings": [
            {"kind": "probability", "class": "a", "probability": 0.81},
            {"kind": "predicted_class", "label": [], "threshold": 0.5},
            {"kind": "referral", "refer": False},
            {"kind": "volume", "structure": "left", "segment": 1, "value": 1.2345, "unit": "mL", "voxels": 1234},
            {"kind": "area", "structure": "left", "segment": 1, "value": 12.5, "unit": "mm2", "pixels": 50},
            {"kind": "box", "class": "cell", "score": 0.77, "box": [1.5, 2, 30.25, 40], "width": 7.19,
             "height": 9.5, "unit": "mm", "member_agreement": 0.6667},
            {"kind": "box_count", "class": "cell", "count": 1, "score_threshold": 0.38},
            {"kind": "value", "name": "volume", "value": 3.21, "unit": "mL", "interval": [2.9, 3.52],
             "interval_level": 0.9},
        ],
        "uncertainty": {"confidence": 0.81, "entropy": 0.4862, "member_disagreement": 0.0123, "passes": 4,
                        "temperature": 1.37, "referral_threshold": 0.7, "conformal_level": 0.9,
                        "prediction_set": [], "refer": False, "score": 0.21, "map": "case_7_uncertainty.nii.gz",
                        "region": "voxels with foreground probability >= 0.1", "novel": 3.5},
        "performance": {"source": "held_out", "dataset": "d", "split": "test", "n_cases": 40, "ci_level": 95,
                        "metrics": [{"name": "dice", "value": 0.89, "low": 0.88, "high": 0.9},
                                    {"name": "new_metric", "value": 2.5, "low": None, "high": None}]},
        "explanation": {"method": None, "images": ["a.png", "b.png"], "default": "occlusion"},
    }  # fmt: skip
    assert {f["kind"] for f in report["findings"]} == set(KINDS)
    for language in known_languages():
        text = render_text(report, language)
        assert numbers_not_in_report(text, report, language) == [], language
        assert "0.6667" in text and "[2.9, 3.52]" in text and "a.png" in text and "3.5" in text


def test_predict_explain_writes_the_default_explanation_and_the_report_names_it(
    pneumonia_run: Path, tmp_path: Path
) -> None:
    """predict --explain --report: the bundle's default method explains the input beside its prediction (overlay
    PNG and map), the same map as ``medlens explain`` with that method, and the report names the method and files."""
    import numpy as np

    picture = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[1]
    folder = predict_report(pneumonia_run / "run", [picture], tmp_path / "out", "--explain")
    report = check_texts(folder, picture.stem)
    default = yaml.safe_load((pneumonia_run / "run" / "bundle" / "bundle.yaml").read_text())["explanation"]["default"]
    explained = report["explanation"]
    assert explained["method"] == explained["default"] == default
    overlay, saved_map = f"{picture.stem}_{default}.png", f"{picture.stem}_{default}.npz"
    assert set(explained["images"]) == {overlay, saved_map}
    assert (tmp_path / "out" / overlay).read_bytes().startswith(b"\x89PNG")
    assert main(["-q", "explain", str(pneumonia_run / "run"), str(picture), "--method", default,
                 "--out", str(tmp_path / "explained")]) == 0  # fmt: skip
    ours = np.load(tmp_path / "out" / saved_map)
    theirs = np.load(next((tmp_path / "explained").rglob(saved_map)))
    key = ours.files[0]
    np.testing.assert_allclose(ours[key], theirs[key], atol=1e-5)
    without = predict_report(pneumonia_run / "run", [picture], tmp_path / "plain")
    assert json.loads((without / f"{picture.stem}.json").read_text())["explanation"]["method"] is None
