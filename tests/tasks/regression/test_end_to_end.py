"""Regression end to end on real data: the hippocampus volume (mL, counted from each case's label) predicted from
the MRI crop, through the real command line; the metrics checked against scikit-learn and scipy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("regression_run")]
N_CASES = 16


@pytest.fixture(scope="module")
def regression_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of 16 real Hippocampus images with their labelled volume, imported, planned and trained briefly."""
    import nibabel as nib

    task = data_root / "Task04_Hippocampus"
    work = tmp_path_factory.mktemp("regression")
    entries = json.loads((task / "dataset.json").read_text())["training"][:N_CASES]
    with open(work / "volumes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "hippocampus_ml"])
        for entry in entries:
            label = nib.load(str(task / entry["label"]))
            ml = float((np.asarray(label.dataobj) > 0).sum() * np.prod(label.header.get_zooms()[:3]) / 1000)
            writer.writerow([str(task / entry["image"]), f"{ml:.4f}"])
    args = ["-q", "import", "csv", str(work / "volumes.csv"), "--label-column", "hippocampus_ml",
            "--target-type", "continuous", "--unit", "mL", "--out", str(work / "ds"), "--seed", "1"]  # fmt: skip
    assert main(args) == 0
    assert main(["-q", "plan", str(work / "ds")]) == 0
    # conformal level 0.6: a level that the two or so validation cases can calibrate
    quick = ["--set", "train.max_epochs=2", "--set", "train.budget_minutes=null",
             "--set", "model.kwargs.widen_factor=0.25", "--set", "train.batch_size=4",
             "--set", "regression.conformal_level=0.6"]  # fmt: skip
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), *quick]) == 0
    return work


def test_import_makes_a_regression_dataset(regression_run: Path) -> None:
    import yaml

    spec = yaml.safe_load((regression_run / "ds" / "dataset.yaml").read_text())
    assert spec["task"] == "regression" and spec["classes"] == ["hippocampus_ml"] and spec["source"]["unit"] == "mL"
    rows = list(csv.DictReader(open(regression_run / "ds" / "manifest.csv")))
    assert len(rows) == N_CASES and all(2.0 < float(r["target"]) < 6.0 for r in rows)  # adult hippocampi, mL
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    plan = yaml.safe_load((regression_run / "ds" / "plan.yaml").read_text())
    assert plan["regression"]["unit"] == "mL" and plan["data"]["fit"] == "pad"  # sizes keep their meaning
    assert plan["augment"]["scale"] == [1.0, 1.0]  # no zoom: it would change the volume


def test_evaluate_reports_every_metric_with_intervals_and_plots(regression_run: Path, tmp_path: Path) -> None:
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    out = tmp_path / "eval"
    assert (
        main(["-q", "evaluate", str(regression_run / "run"), "--out", str(out), "--split", "all", "--bootstrap", "200"])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    truth = np.array([float(r["true"]) for r in rows])
    predicted = np.array([float(r["predicted"]) for r in rows])
    assert len(rows) == N_CASES
    assert metrics["mae"]["value"] == pytest.approx(mean_absolute_error(truth, predicted), abs=1e-4)
    assert metrics["rmse"]["value"] == pytest.approx(mean_squared_error(truth, predicted) ** 0.5, abs=1e-4)
    assert metrics["r2"]["value"] == pytest.approx(r2_score(truth, predicted), abs=1e-4)
    assert metrics["pearson_r"]["value"] == pytest.approx(pearsonr(truth, predicted)[0], abs=1e-3)
    for key in ("mae", "rmse", "r2", "pearson_r", "bias", "loa_low", "loa_high"):
        lo, hi = metrics[key]["ci95"]
        assert lo <= metrics[key]["value"] <= hi, key
    assert (out / "scatter.png").stat().st_size > 1000 and (out / "bland_altman.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "Bland-Altman" in html and "R²" in html


def test_the_conformal_interval_comes_from_validation(regression_run: Path, tmp_path: Path) -> None:
    """The interval is the value ± the validation cases' absolute-error quantile; its test coverage is reported."""
    from medlens.metrics.conformal import conformal_quantile
    from medlens.tasks.base import load_bundle

    calibration = load_bundle(regression_run / "run").calibration
    run = str(regression_run / "run")
    assert main(["-q", "evaluate", run, "--split", "val", "--out", str(tmp_path / "val"), "--bootstrap", "0"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "val" / "predictions.csv")))
    residuals = np.array([abs(float(r["true"]) - float(r["predicted"])) for r in rows])
    half = calibration["interval_half_width"]
    assert calibration["conformal_level"] == 0.6 and half == pytest.approx(conformal_quantile(residuals, 0.6), abs=1e-4)
    for r in rows:
        assert float(r["interval_high"]) - float(r["interval_low"]) == pytest.approx(2 * half, abs=1e-4)
    assert main(["-q", "evaluate", run, "--split", "test", "--out", str(tmp_path / "test"), "--bootstrap", "50"]) == 0
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "test" / "predictions.csv")))
    covered = [float(r["interval_low"]) <= float(r["true"]) <= float(r["interval_high"]) for r in rows]
    assert metrics["interval_coverage"]["value"] == pytest.approx(np.mean(covered))
    assert metrics["interval_width"]["value"] == pytest.approx(2 * half, abs=1e-4)
    assert "mae" in metrics["interval_method"]["BCa"]


def test_predict_gives_the_value_in_its_unit_and_onnx_agrees(regression_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    import medlens
    from medlens.training.images import to_input

    with open(regression_run / "volumes.csv", newline="") as handle:
        path = next(csv.DictReader(handle))["image"]
    assert main(["-q", "predict", str(regression_run / "run"), path, "--out", str(tmp_path / "p")]) == 0
    written = json.loads(next((tmp_path / "p").glob("*.json")).read_text())
    assert written["task"] == "regression" and written["unit"] == "mL" and 1.0 < written["value"] < 8.0
    assert main(["-q", "export", str(regression_run / "run"), "--out", str(tmp_path / "onnx")]) == 0
    bundle = medlens.load_bundle(regression_run / "run")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = to_input(medlens.read_image(path), bundle.plan.data)[None]
    assert float(session.run(None, {"image": x})[0][0]) == pytest.approx(written["value"], abs=1e-3)


def test_report_states_the_value_and_the_worst_cases(regression_run: Path, tmp_path: Path) -> None:
    """predict --report: the value with its unit, in texts whose numbers are all in the JSON; evaluation lists the
    cases with the largest absolute errors, and the bundle's card its worst validation cases."""
    from report_texts import numbers_not_in_report

    with open(regression_run / "volumes.csv", newline="") as handle:
        path = Path(next(csv.DictReader(handle))["image"])
    out = tmp_path / "p"
    assert main(["-q", "predict", str(regression_run / "run"), str(path), "--out", str(out), "--report"]) == 0
    stem = path.name.removesuffix(".nii.gz")
    report = json.loads((out / "reports" / f"{stem}.json").read_text())
    (finding,) = report["findings"]
    written = json.loads((out / f"{stem}.json").read_text())
    interval = [round(v, 4) for v in written["interval"]]  # calibration's conformal interval, rounded once
    assert finding == {"kind": "value", "name": "hippocampus_ml", "value": round(written["value"], 4), "unit": "mL",
                       "interval": interval, "interval_level": written["interval_level"]}  # fmt: skip
    assert interval[0] <= finding["value"] <= interval[1]
    for language in ("en", "zh"):
        text = (out / "reports" / f"{stem}.{language}.txt").read_text()
        assert numbers_not_in_report(text, report, language) == []
    assert (
        f"hippocampus_ml: {finding['value']:g} mL (interval [{interval[0]:g}, {interval[1]:g}]"
        in (out / "reports" / f"{stem}.en.txt").read_text()
    )
    card = (regression_run / "run" / "bundle" / "model_card.md").read_text()
    assert "Worst validation cases by absolute error" in card


def test_regression_metrics_match_the_references_under_the_bootstrap() -> None:
    """The weighted statistics equal scikit-learn's and scipy's on the resampled cases themselves."""
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error, r2_score

    from medlens.metrics.bootstrap import resample_weights
    from medlens.tasks.regression.metrics import weighted_regression

    rng = np.random.default_rng(3)
    truth = rng.normal(3.5, 0.4, 40)
    predicted = truth + rng.normal(0.1, 0.2, 40)
    weights = next(resample_weights(40, 5, seed=0))
    values = weighted_regression(truth, predicted, weights)
    for b, w in enumerate(weights):
        picked = np.repeat(np.arange(40), w)
        assert values["mae"][b] == pytest.approx(mean_absolute_error(truth[picked], predicted[picked]))
        assert values["r2"][b] == pytest.approx(r2_score(truth[picked], predicted[picked]))
        assert values["pearson_r"][b] == pytest.approx(pearsonr(truth[picked], predicted[picked])[0])
        errors = predicted[picked] - truth[picked]
        assert values["loa_high"][b] == pytest.approx(errors.mean() + 1.96 * errors.std(ddof=1))


def test_a_non_numeric_value_is_named(tmp_path: Path, capsys: pytest.CaptureFixture, data_root: Path) -> None:
    image = data_root / "Task04_Hippocampus" / "imagesTr" / "hippocampus_004.nii.gz"
    (tmp_path / "t.csv").write_text(f"image,ml\n{image},3.2\n{image},large\n")
    assert main(["import", "csv", str(tmp_path / "t.csv"), "--label-column", "ml", "--target-type", "continuous",
                 "--out", str(tmp_path / "ds")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "line 3" in err and "'large' is not a finite number" in err and not (tmp_path / "ds").exists()


def test_distill_gives_a_smaller_regressor_that_predicts_in_the_unit(regression_run: Path, tmp_path: Path) -> None:
    """Regression provides the distillation hook: the teacher's values are the soft target (no temperature)."""
    import medlens

    out = tmp_path / "small"
    args = ["-q", "distill", str(regression_run / "run"), "--out", str(out), "--budget", "1m",
            "--set", "train.max_epochs=1"]  # fmt: skip
    assert main(args) == 0
    student, teacher = medlens.load_bundle(out), medlens.load_bundle(regression_run / "run")
    made = student.info["made_from"]
    assert made["flops_ratio"] >= 3 and "no temperature" in made["loss"]
    count = [sum(p.numel() for n in b.networks() for p in n.parameters()) for b in (student, teacher)]
    assert count[0] < count[1]
    with open(regression_run / "volumes.csv", newline="") as handle:
        path = next(csv.DictReader(handle))["image"]
    value = student.predict(path).to_dict()
    assert value["unit"] == "mL" and np.isfinite(value["value"])
