"""The sequence task end to end on the real OASIS-2 table, through the command line: import with a subject-level
split, plan, a few epochs of training, evaluation against the two baselines, prediction on a table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sequence_run")]
OASIS = "oasis2/oasis_longitudinal.csv"
IMPORT = ["--task", "sequence", "--subject", "Subject ID", "--order", "Visit", "--target", "Group"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def sequence_run(real_data, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """OASIS-2 imported, planned and trained for 3 epochs; evaluated on its test subjects."""
    work = tmp_path_factory.mktemp("sequence")
    assert main(["-q", "import", "table", str(real_data(OASIS)), *IMPORT, "--out", str(work / "ds")]) == 0
    assert main(["-q", "plan", str(work / "ds")]) == 0
    quick = ["--set", "train.max_epochs=3", "--set", "train.early_stopping_patience=null"]
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), *quick]) == 0
    assert main(["-q", "evaluate", str(work / "run"), "--out", str(work / "eval"), "--bootstrap", "200"]) == 0
    return work


def test_import_splits_by_subject_and_records_its_exclusions(sequence_run: Path, real_data) -> None:  # type: ignore[no-untyped-def]
    manifest = rows(sequence_run / "ds" / "manifest.csv")
    table = rows(real_data(OASIS))
    subjects = {r["Subject ID"] for r in table}
    assert sorted(c["case_id"] for c in manifest) == sorted(subjects)  # one case per subject, each once
    split_of = {c["case_id"]: c["split"] for c in manifest}
    visits = rows(sequence_run / "ds" / "visits.csv")
    assert len(visits) == len(table)
    for split in ("train", "val", "test"):  # every split holds both outcomes
        assert {c["target"] for c in manifest if c["split"] == split} == {"0", "1"}
    # the outcome is the Group at the last visit, Nondemented negative
    last = {r["Subject ID"]: r["Group"] for r in sorted(table, key=lambda r: int(r["Visit"]))}
    assert all(c["target"] == str(int(last[c["case_id"]] != "Nondemented")) for c in manifest)
    assert len({split_of[v["Subject ID"]] for v in visits}) == 3 and all(v["Subject ID"] in split_of for v in visits)
    source = json.loads((sequence_run / "ds" / "fingerprint.json").read_text())["sequence"]
    assert {"CDR", "MRI ID", "Group", "Subject ID", "Hand"} <= set(source["excluded"])
    assert "leaks the outcome" in source["excluded"]["CDR"]
    assert "MMSE" in [f["name"] for f in source["features"]] and "CDR" not in visits[0]


def test_evaluation_writes_the_auc_and_both_baselines(sequence_run: Path) -> None:
    metrics = json.loads((sequence_run / "eval" / "metrics.json").read_text())
    entries = [metrics["auc"]] + [
        {"value": metrics["baselines"][b]["auc"], "ci95": metrics["baselines"][b]["ci95"]}
        for b in ("logistic_regression", "gradient_boosting")
    ]
    for entry in entries:
        low, high = entry["ci95"]
        assert all(math.isfinite(v) for v in (entry["value"], low, high))
        assert 0 <= low <= entry["value"] <= high <= 1
    assert metrics["bootstrap"]["unit"] == "subject" and metrics["n_subjects"] == 30
    # the logistic regression baseline is scikit-learn's, on the last visits: not a constant
    predictions = rows(sequence_run / "eval" / "predictions.csv")
    assert len({p["logistic_regression"] for p in predictions}) > 10
    assert (sequence_run / "eval" / "attention.png").stat().st_size > 1000
    assert "Attention over visits" in (sequence_run / "eval" / "report.html").read_text()


def test_attention_sums_to_one_over_real_visits_and_padding_gets_zero(sequence_run: Path) -> None:
    import torch

    from medlens.data.dataset import load_dataset
    from medlens.tasks import load_bundle
    from medlens.tasks.sequence.table import dataset_visits, encode_subjects

    bundle = load_bundle(sequence_run / "run")
    dataset = load_dataset(sequence_run / "ds")
    x, mask, _ = encode_subjects(dataset_visits(dataset), bundle.plan.sequence)  # type: ignore[attr-defined]
    assert (~mask).any() and mask.sum(axis=1).min() >= 2  # padding is there to be masked
    with torch.inference_mode():
        _, attention = bundle.networks()[0](torch.from_numpy(x), torch.from_numpy(mask))
    attention = attention.numpy()
    np.testing.assert_allclose((attention * mask).sum(axis=1), 1.0, atol=1e-5)
    assert np.all(attention[~mask] == 0)
    assert len(np.unique(attention[mask].round(4))) > 10  # weights that differ between visits


def test_predict_a_table_gives_each_subject_its_probability_and_attention(sequence_run: Path, real_data) -> None:  # type: ignore[no-untyped-def]
    table = rows(real_data(OASIS))
    chosen = {"OAS2_0001", "OAS2_0002", "OAS2_0004"}
    given = sequence_run / "three.csv"
    with open(given, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(r for r in table if r["Subject ID"] in chosen)
    out = sequence_run / "predicted"
    assert main(["-q", "predict", str(sequence_run / "run"), str(given), "--out", str(out)]) == 0
    predicted = rows(out / "predictions.csv")
    assert {p["subject"] for p in predicted} == chosen
    assert all(0 <= float(p["probability"]) <= 1 for p in predicted)
    attention = rows(out / "attention.csv")
    for subject in chosen:
        weights = [float(a["attention"]) for a in attention if a["subject"] == subject]
        assert len(weights) == sum(r["Subject ID"] == subject for r in table)
        assert abs(sum(weights) - 1) < 1e-3
    # the same probabilities as the bundle gives in memory
    from medlens.tasks import load_bundle

    again = {p.subject: p.probability for p in load_bundle(sequence_run / "run").predict_many([given])}  # type: ignore[attr-defined]
    assert all(abs(again[p["subject"]] - float(p["probability"])) < 1e-5 for p in predicted)
    # written again without --overwrite: refused, and the folder kept
    assert main(["-q", "predict", str(sequence_run / "run"), str(given), "--out", str(out)]) != 0
    assert (out / "predictions.csv").is_file()


def test_import_refuses_an_existing_dataset_without_overwrite(sequence_run: Path, real_data) -> None:  # type: ignore[no-untyped-def]
    before = (sequence_run / "ds" / "manifest.csv").read_bytes()
    args = ["-q", "import", "table", str(real_data(OASIS)), *IMPORT, "--out", str(sequence_run / "ds")]
    assert main(args) != 0
    assert (sequence_run / "ds" / "manifest.csv").read_bytes() == before


def test_an_unknown_subject_column_is_a_one_line_error_naming_file_and_column(
    real_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    args = ["import", "table", str(real_data(OASIS)), "--task", "sequence", "--subject", "Patient",
            "--order", "Visit", "--target", "Group", "--out", str(tmp_path / "ds")]  # fmt: skip
    assert main(args) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "oasis_longitudinal.csv" in error and "'Patient'" in error
    assert not (tmp_path / "ds").exists()


def test_the_onnx_export_gives_the_bundles_probabilities_and_attention(sequence_run: Path) -> None:
    import onnxruntime as ort

    from medlens.data.dataset import load_dataset
    from medlens.tasks import load_bundle
    from medlens.tasks.sequence.table import dataset_visits, encode_subjects

    assert main(["-q", "export", str(sequence_run / "run"), "--out", str(sequence_run / "onnx")]) == 0
    bundle = load_bundle(sequence_run / "run")
    dataset = load_dataset(sequence_run / "ds")
    table = dataset_visits(dataset, dataset.split("test"))
    x, mask, _ = encode_subjects(table, bundle.plan.sequence)  # type: ignore[attr-defined]
    packed = np.concatenate([x, mask[..., None].astype(np.float32)], axis=-1)
    session = ort.InferenceSession(str(sequence_run / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    probability, attention = session.run(None, {"visits": packed})
    predicted = {p.subject: p for p in bundle.predict_many([table])}  # type: ignore[attr-defined]
    for i, subject in enumerate(table.subjects):
        assert abs(float(probability[i]) - predicted[subject].probability) < 1e-5
        n = int(mask[i].sum())
        np.testing.assert_allclose(attention[i, :n], predicted[subject].attention, atol=1e-5)
        assert np.all(attention[i, n:] == 0)
