"""``evaluate --by COLUMN``: every metric per subgroup, equal to evaluating that subgroup alone; a planted bad
subgroup flagged; an unknown column refused in one line; patients resampled when cases share them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main


def _rewrite(ds: Path, change: dict[str, dict[str, str]], keep: set[str] | None = None) -> None:
    """Add or set manifest columns per case (``change[case_id][column]``), and keep only ``keep`` test cases."""
    with open(ds / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [r for r in rows if keep is None or r["split"] != "test" or r["case_id"] in keep]
    columns = list(rows[0]) + [c for c in next(iter(change.values()), {}) if c not in rows[0]]
    with open(ds / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(row | change.get(row["case_id"], {}))


@pytest.fixture()
def by_site(pneumonia_run: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the run's dataset with a ``site`` column: ``bad`` holds the test cases the model ranks worst."""
    first = tmp_path / "first"
    assert main(["-q", "evaluate", str(pneumonia_run / "run"), "--out", str(first), "--bootstrap", "0"]) == 0
    rows = list(csv.DictReader(open(first / "predictions.csv")))
    p = {r["case_id"]: float(r["p_pneumonia"]) for r in rows}
    positives = sorted((r["case_id"] for r in rows if r["target"] == "1"), key=p.__getitem__)
    negatives = sorted((r["case_id"] for r in rows if r["target"] == "0"), key=p.__getitem__, reverse=True)
    bad = set(positives[:6]) | set(negatives[:6])  # positives scored lowest, negatives highest
    site = {c: ("bad" if c in bad else "A" if i % 2 else "B") for i, c in enumerate(p)}
    ds = tmp_path / "ds"
    shutil.copytree(pneumonia_run / "ds", ds)
    _rewrite(ds, {c: {"site": s} for c, s in site.items()})
    return ds, site


def _evaluate(run: Path, ds: Path, out: Path, *flags: str) -> dict:
    args = ["-q", "evaluate", str(run / "run"), "--dataset", str(ds), "--out", str(out), "--bootstrap", "200"]
    assert main([*args, *flags]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_by_reports_each_subgroup_as_if_evaluated_alone_and_flags_the_bad_one(
    pneumonia_run: Path, by_site: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    ds, site = by_site
    metrics = _evaluate(pneumonia_run, ds, tmp_path / "by", "--by", "site")
    sub = metrics["subgroups"]
    assert sub["column"] == "site" and set(sub["groups"]) == {"A", "B", "bad"}
    assert sub["flagged"] == ["bad"]  # its AUC interval lies wholly below the rest's
    bad = sub["groups"]["bad"]
    assert bad["headline"]["ci95"][1] < bad["rest"]["ci95"][0] and bad["n_cases"] == 12
    alone_ds = tmp_path / "only_a"
    shutil.copytree(ds, alone_ds)
    _rewrite(alone_ds, {}, keep={c for c, s in site.items() if s == "A"})
    alone = _evaluate(pneumonia_run, alone_ds, tmp_path / "alone")
    group = sub["groups"]["A"]["metrics"]
    for key in ("auc", "accuracy", "ece", "ece_uncalibrated", "aurc", "conformal_coverage", "conformal_set_size"):
        # the same values and intervals (up to float noise: the network sees the images in other batches)
        assert group[key]["value"] == pytest.approx(alone[key]["value"], abs=1e-5), key
        assert group[key]["ci95"] == pytest.approx(alone[key]["ci95"], abs=1e-5), key
    assert group["referral"]["n_referred"] == alone["referral"]["n_referred"] and group["n_cases"] == alone["n_cases"]
    html = (tmp_path / "by" / "report.html").read_text()
    assert "Subgroups by site" in html and "BELOW THE REST" in html


def test_an_unknown_column_is_one_line_naming_the_columns(
    pneumonia_run: Path, by_site: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, _ = by_site
    args = ["evaluate", str(pneumonia_run / "run"), "--dataset", str(ds), "--out", str(tmp_path / "x"), "--by", "sex"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'sex'" in err and "site" in err and "case_id" in err
    assert not (tmp_path / "x").exists()


def test_cases_sharing_a_patient_are_resampled_together(
    pneumonia_run: Path, by_site: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    ds, site = by_site
    test_ids = sorted(site)
    _rewrite(ds, {c: {"patient_id": f"patient_{i // 2}"} for i, c in enumerate(test_ids)})  # two images each
    metrics = _evaluate(pneumonia_run, ds, tmp_path / "patients")
    assert metrics["bootstrap"]["unit"] == "patient" and metrics["bootstrap"]["n_units"] == len(test_ids) // 2
    assert np.isfinite(metrics["auc"]["ci95"]).all()
