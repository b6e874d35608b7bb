"""Manifest columns beyond the five: DICOM importers keep PatientSex, PatientAge and Manufacturer, the csv importer
keeps the table's other columns, and a five-column manifest reads and writes as before."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from medlens.data.dataset import MANIFEST_COLUMNS, Case, DatasetSpec, load_dataset, write_dataset
from medlens.data.importers import get_importer

FILES = {  # real files with different sexes, ages and makers (MR_small has no PatientAge)
    "a": ["pydicom_testdata/CT_small.dcm", "deid_data/ctbrain1.dcm"],
    "b": ["pydicom_testdata/MR_small.dcm", "deid_data/ctbrain2.dcm"],
}


def _dicom_classes(real_data: Callable[[str], Path], root: Path) -> dict[str, Path]:
    copies = {}
    for label, files in FILES.items():
        (root / label).mkdir(parents=True)
        for name in files:
            copies[name] = shutil.copy(real_data(f"dicom/{name}"), root / label / Path(name).name)
    return {name: Path(path) for name, path in copies.items()}


def _expected(path: Path) -> dict[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {k: str(ds.get(k) or "").strip() for k in ("PatientSex", "PatientAge", "Manufacturer")}


def test_folder_import_keeps_sex_age_and_maker(real_data: Callable[[str], Path], tmp_path: Path) -> None:
    copies = _dicom_classes(real_data, tmp_path / "src")
    ds = get_importer("folder")(tmp_path / "src", tmp_path / "out", val_fraction=0, test_fraction=0.5)
    header = next(csv.reader(open(tmp_path / "out" / "manifest.csv")))
    assert header[:5] == list(MANIFEST_COLUMNS) and set(header[5:]) == {"PatientSex", "PatientAge", "Manufacturer"}
    by_file = {Path(c.image[0]).name: c for c in ds.cases}
    for path in copies.values():
        case = by_file[path.name]
        assert {k: case.value(k) for k in ("PatientSex", "PatientAge", "Manufacturer")} == _expected(path)
    assert by_file["MR_small.dcm"].value("PatientAge") == "" and by_file["CT_small.dcm"].value("PatientSex") == "O"
    assert ds.columns[5:] == header[5:]


def test_csv_import_keeps_the_tables_other_columns(real_data: Callable[[str], Path], tmp_path: Path) -> None:
    copies = _dicom_classes(real_data, tmp_path / "src")
    table = tmp_path / "src" / "table.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "site", "Manufacturer"])
        for i, (name, path) in enumerate(copies.items()):
            writer.writerow([path.relative_to(table.parent), Path(name).parent.name, f"site{i % 2}", ""])
    ds = get_importer("csv")(table, tmp_path / "out", val_fraction=0, test_fraction=0.5)
    by_file = {Path(c.image[0]).name: c for c in ds.cases}
    for i, path in enumerate(copies.values()):
        case = by_file[path.name]
        assert case.value("site") == f"site{i % 2}"
        assert case.value("PatientSex") == _expected(path)["PatientSex"]  # read from the DICOM file
        assert case.value("Manufacturer") == ""  # the table's own (empty) column wins
    assert "label" not in ds.columns and "image" in ds.columns  # the columns used are not kept twice


def test_a_five_column_manifest_reads_and_writes_as_before(tmp_path: Path) -> None:
    spec = DatasetSpec(name="t", task="classification", spatial_dims=2, classes=["a", "b"])
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    cases = [Case(f"c{i}", f"p{i}", ["x.png"], str(i % 2), "train") for i in range(3)]
    write_dataset(tmp_path, spec, cases)
    before = (tmp_path / "manifest.csv").read_bytes()
    loaded = load_dataset(tmp_path)
    assert all(c.extra == {} for c in loaded.cases) and loaded.columns == list(MANIFEST_COLUMNS)
    write_dataset(tmp_path, spec, loaded.cases)
    assert (tmp_path / "manifest.csv").read_bytes() == before
    extra = [Case("c9", "p9", ["x.png"], "0", "test", {"site": "north"}), *cases]
    write_dataset(tmp_path, spec, extra)
    again = load_dataset(tmp_path)
    assert again.cases[0].extra == {"site": "north"} and again.cases[1].extra == {"site": ""}
    assert np.array([c.value("site") for c in again.cases]).tolist() == ["north", "", "", ""]
