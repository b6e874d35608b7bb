"""Importers (MedMNIST archives, class folders, CSV tables) on small real data.

Every archive, PNG and DICOM file here is made in ``tmp_path`` from the real data in ``MEDLENS_DATA``.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import load_dataset
from medlens.data.importers import get_importer, list_importers
from medlens.data.importers import medmnist as medmnist_module
from medlens.data.importers.medmnist import download_medmnist, md5sum, parse_name

CATALOG_FILE = Path(medmnist_module.__file__).with_name("medmnist_catalog.yaml")


def _catalog() -> dict:
    return yaml.safe_load(CATALOG_FILE.read_text())


def _only_output(tmp_path: Path, keep: set[str]) -> list[str]:
    """Names in ``tmp_path`` besides ``keep`` (a failed import must leave nothing, not even a .partial)."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------------------------- registry


def test_registry_lists_builtin_importers() -> None:
    assert {"medmnist", "folder", "csv"} <= set(list_importers())
    with pytest.raises(ConfigError, match="nifti_folder"):
        get_importer("nifti_folder")


# --------------------------------------------------------------------------------------------- medmnist


def test_medmnist_2d(small_pneumonia_npz: Path, tmp_path: Path) -> None:
    ds = get_importer("medmnist")(small_pneumonia_npz, tmp_path / "out")
    arrays = np.load(small_pneumonia_npz)
    assert ds.spec.name == "pneumoniamnist"
    assert (ds.spec.task, ds.spec.spatial_dims, ds.spec.modality, ds.spec.channels) == (
        "classification",
        2,
        "DX",
        ["gray"],
    )
    assert ds.spec.classes == _catalog()["pneumoniamnist"]["labels"]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [40, 20, 20]
    for split in ("train", "val", "test"):
        cases = ds.split(split)
        assert [int(c.target) for c in cases] == arrays[f"{split}_labels"][:, 0].tolist()
        # pixels survive the trip through PNG unchanged
        first, last = cases[0], cases[-1]
        np.testing.assert_array_equal(np.asarray(PILImage.open(ds.image_paths(first)[0])), arrays[f"{split}_images"][0])
        np.testing.assert_array_equal(np.asarray(PILImage.open(ds.image_paths(last)[0])), arrays[f"{split}_images"][-1])
    assert len({c.patient_id for c in ds.cases}) == 80
    assert load_dataset(tmp_path / "out").cases == ds.cases


def test_medmnist_3d(small_adrenal_npz: Path, tmp_path: Path) -> None:
    ds = get_importer("medmnist")(small_adrenal_npz, tmp_path / "out")
    arrays = np.load(small_adrenal_npz)
    assert (ds.spec.task, ds.spec.spatial_dims, ds.spec.modality) == ("classification", 3, "CT")
    assert ds.spec.classes == ["normal", "hyperplasia"]
    assert [int(c.target) for c in ds.split("val")] == arrays["val_labels"][:, 0].tolist()
    case = ds.split("test")[3]
    assert ds.image_paths(case)[0].name.endswith(".nii.gz")
    volume = np.asarray(nib.load(ds.image_paths(case)[0]).dataobj)
    np.testing.assert_array_equal(volume, arrays["test_images"][3])


def test_labels_shaped_n_and_n1_give_the_same_dataset(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    flat = {k: (v[:, 0] if k.endswith("labels") else v) for k, v in arrays.items()}
    assert flat["train_labels"].shape == (40,)
    a = get_importer("medmnist")(write_npz(tmp_path / "a" / "pneumoniamnist.npz", arrays), tmp_path / "ds_a")
    b = get_importer("medmnist")(write_npz(tmp_path / "b" / "pneumoniamnist.npz", flat), tmp_path / "ds_b")
    assert [c.target for c in a.cases] == [c.target for c in b.cases]
    assert a.spec.classes == b.spec.classes


def test_catalog_classes_kept_when_a_class_is_absent(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    """Only normal images in the archive: still a 2-class pneumonia dataset (the model needs 2 outputs)."""
    arrays = medmnist_subset("pneumoniamnist")
    for split in ("train", "val", "test"):
        keep = arrays[f"{split}_labels"][:, 0] == 0
        arrays[f"{split}_images"] = arrays[f"{split}_images"][keep]
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"][keep]
    ds = get_importer("medmnist")(write_npz(tmp_path / "src" / "pneumoniamnist.npz", arrays), tmp_path / "out")
    assert ds.spec.classes == ["normal", "pneumonia"]
    assert {c.target for c in ds.cases} == {"0"}


def test_unknown_archive_name_gets_numbered_classes(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    ds = get_importer("medmnist")(write_npz(tmp_path / "src" / "my_xrays.npz", arrays), tmp_path / "out")
    assert ds.spec.classes == ["class_0", "class_1"]
    assert ds.spec.name == "my_xrays"
    assert ds.spec.modality == "OT"


@pytest.mark.parametrize(("name", "n_labels"), [("chestmnist", 14), ("my_multilabel", 3)])
def test_multilabel_archive(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable, name: str, n_labels: int
) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        arrays[f"{split}_labels"] = rng.integers(0, 2, (len(arrays[f"{split}_images"]), n_labels)).astype(np.uint8)
    ds = get_importer("medmnist")(write_npz(tmp_path / "src" / f"{name}.npz", arrays), tmp_path / "out")
    assert ds.spec.task == "multilabel"
    assert len(ds.spec.classes) == n_labels
    if name == "chestmnist":
        assert ds.spec.classes == _catalog()["chestmnist"]["labels"]
    for split in ("train", "test"):
        got = np.array([ds.label_vector(c) for c in ds.split(split)])
        np.testing.assert_array_equal(got, arrays[f"{split}_labels"])
        assert all(len(c.target.split(";")) == n_labels for c in ds.split(split))


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("pneumoniamnist.npz", ("pneumoniamnist", 28)),
        ("pneumoniamnist_64.npz", ("pneumoniamnist", 64)),
        ("AdrenalMNIST3D_64.npz", ("adrenalmnist3d", 64)),
        ("organmnist3d.npz", ("organmnist3d", 28)),
        ("chestmnist_224.npz", ("chestmnist", 224)),
        ("my_archive.npz", (None, 28)),
        ("unknownmnist_128.npz", (None, 128)),
    ],
)
def test_parse_name(filename: str, expected: tuple) -> None:
    assert parse_name(Path(filename)) == expected


def test_catalog_entries_are_complete() -> None:
    cat = _catalog()
    assert len(cat) == 18  # MedMNIST v3: 12 2D + 6 3D sets
    for name, entry in cat.items():
        sizes = {28, 64} if entry["spatial_dims"] == 3 else {28, 64, 128, 224}
        assert set(entry["files"]) == sizes, name
        for spec in entry["files"].values():
            assert len(spec["md5"]) == 32 and int(spec["md5"], 16) >= 0
            assert spec["url"].startswith("https://zenodo.org/")
        assert len(entry["labels"]) >= 2, name


def test_download_medmnist_from_local_file(real_data: Callable[[str], Path], tmp_path: Path) -> None:
    source = real_data("medmnist/adrenalmnist3d.npz")
    official = _catalog()["adrenalmnist3d"]["files"][28]["md5"]
    assert md5sum(source) == official
    got = download_medmnist("adrenalmnist3d", 28, root=tmp_path / "cache", url=source.as_uri())
    assert got == tmp_path / "cache" / "adrenalmnist3d.npz"
    assert md5sum(got) == official
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["adrenalmnist3d.npz"]
    # a verified file is not fetched again (this URL would fail)
    again = download_medmnist("adrenalmnist3d", 28, root=tmp_path / "cache", url=(tmp_path / "nope.npz").as_uri())
    assert again == got


def test_download_with_wrong_md5_leaves_no_file(small_adrenal_npz: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with pytest.raises(InputError, match="MD5"):
        download_medmnist("adrenalmnist3d", 28, root=root, url=small_adrenal_npz.as_uri())
    assert list(root.iterdir()) == []


def test_download_unknown_name_or_size(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="catalog"):
        download_medmnist("notamnist", 28, root=tmp_path)
    with pytest.raises(InputError, match="catalog"):
        download_medmnist("adrenalmnist3d", 224, root=tmp_path)  # 3D sets come in 28 and 64 only
    assert list(tmp_path.iterdir()) == []


def test_corrupt_npz_is_input_error_and_leaves_nothing(tmp_path: Path, small_pneumonia_npz: Path) -> None:
    bad = tmp_path / "pneumoniamnist_bad.npz"
    bad.write_bytes(small_pneumonia_npz.read_bytes()[:5000])  # truncated zip
    with pytest.raises(InputError) as info:
        get_importer("medmnist")(bad, tmp_path / "out")
    assert info.value.path == bad
    assert _only_output(tmp_path, {"src", bad.name}) == []


def test_missing_keys_is_input_error(tmp_path: Path, medmnist_subset: Callable, write_npz: Callable) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    del arrays["test_labels"]
    path = write_npz(tmp_path / "src" / "pneumoniamnist.npz", arrays)
    with pytest.raises(InputError, match="test_labels"):
        get_importer("medmnist")(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_count_mismatch_and_negative_labels(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    short = dict(arrays, val_labels=arrays["val_labels"][:5])
    with pytest.raises(InputError, match="val_labels"):
        get_importer("medmnist")(write_npz(tmp_path / "a" / "x.npz", short), tmp_path / "out")
    negative = dict(arrays, train_labels=arrays["train_labels"].astype(np.int64) - 1)
    with pytest.raises(InputError, match="negative"):
        get_importer("medmnist")(write_npz(tmp_path / "b" / "x.npz", negative), tmp_path / "out")
    too_many = dict(arrays, test_labels=np.full_like(arrays["test_labels"], 5))
    with pytest.raises(InputError, match="2 classes"):
        get_importer("medmnist")(write_npz(tmp_path / "c" / "pneumoniamnist.npz", too_many), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failure_while_writing_leaves_no_folder(
    tmp_path: Path, small_pneumonia_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = medmnist_module._write_case
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 30:
            raise InputError("disk", "full")
        return real(*args, **kwargs)

    monkeypatch.setattr(medmnist_module, "_write_case", flaky)
    with pytest.raises(InputError, match="full"):
        get_importer("medmnist")(small_pneumonia_npz, tmp_path / "out")
    assert _only_output(tmp_path, {"src"}) == []


def test_existing_output_needs_overwrite(small_pneumonia_npz: Path, tmp_path: Path) -> None:
    importer = get_importer("medmnist")
    importer(small_pneumonia_npz, tmp_path / "out")
    with pytest.raises(InputError, match="exists"):
        importer(small_pneumonia_npz, tmp_path / "out")
    assert len(importer(small_pneumonia_npz, tmp_path / "out", overwrite=True).cases) == 80


# --------------------------------------------------------------------------------------------- folder


def _write_pngs(folder: Path, images: np.ndarray, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        PILImage.fromarray(image).save(folder / f"{prefix}{i:03d}.png")


@pytest.fixture()
def pneumonia_by_class(medmnist_subset: Callable) -> dict[str, np.ndarray]:
    arrays = medmnist_subset("pneumoniamnist")
    labels = arrays["train_labels"][:, 0]
    return {"normal": arrays["train_images"][labels == 0], "pneumonia": arrays["train_images"][labels == 1]}


def test_folder_of_class_subfolders(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> None:
    src = tmp_path / "src"
    for name, images in pneumonia_by_class.items():
        _write_pngs(src / name, images, name[:2])
    (src / "normal" / "README.txt").write_text("not an image")
    (src / ".hidden").mkdir()
    ds = get_importer("folder")(src, tmp_path / "out", seed=1)
    assert ds.spec.classes == ["normal", "pneumonia"]
    assert (ds.spec.task, ds.spec.spatial_dims, ds.spec.channels) == ("classification", 2, ["gray"])
    n = {k: len(v) for k, v in pneumonia_by_class.items()}
    assert len(ds.cases) == n["normal"] + n["pneumonia"]
    for case in ds.cases:
        path = Path(case.image[0])
        assert path.is_absolute() and path.is_file()
        assert ds.spec.classes[int(case.target)] == path.parent.name
        assert case.patient_id == path.stem
    # split by the helper: all three splits, both classes in each
    for split in ("train", "val", "test"):
        assert {c.target for c in ds.split(split)} == {"0", "1"}, split


def test_folder_with_split_folders(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> None:
    src = tmp_path / "src"
    for name, images in pneumonia_by_class.items():
        _write_pngs(src / "train" / name, images[:6], "a")
        _write_pngs(src / "val" / name, images[6:8], "b")
        _write_pngs(src / "test" / name, images[8:11], "c")
    ds = get_importer("folder")(src, tmp_path / "out")
    assert ds.spec.classes == ["normal", "pneumonia"]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [12, 4, 6]
    for case in ds.cases:
        assert Path(case.image[0]).parent.parent.name == case.split
        assert case.case_id.startswith(case.split + "/")


def test_folder_of_dicom_files(real_data: Callable[[str], Path], tmp_path: Path) -> None:
    testdata = real_data("dicom/pydicom_testdata/CT_small.dcm").parent
    src = tmp_path / "src"
    (src / "ct").mkdir(parents=True)
    (src / "mr").mkdir()
    for i in range(3):
        shutil.copy(testdata / "CT_small.dcm", src / "ct" / f"slice{i}.dcm")
    shutil.copy(testdata / "MR_small.dcm", src / "mr" / "a.dcm")
    shutil.copy(testdata / "MR_small.dcm", src / "mr" / "IM0001")  # DICOM without a suffix, found by its preamble
    ds = get_importer("folder")(src, tmp_path / "out")
    assert ds.spec.classes == ["ct", "mr"]
    assert ds.spec.spatial_dims == 2
    by_class = {name: [c for c in ds.cases if c.target == str(i)] for i, name in enumerate(ds.spec.classes)}
    assert [c.patient_id for c in by_class["ct"]] == ["1CT1"] * 3
    assert [c.patient_id for c in by_class["mr"]] == ["4MR1"] * 2
    for cases in by_class.values():
        assert len({c.split for c in cases}) == 1  # one patient, one split


def test_folder_with_an_empty_class(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> None:
    src = tmp_path / "src"
    _write_pngs(src / "normal", pneumonia_by_class["normal"][:4], "n")
    _write_pngs(src / "pneumonia", pneumonia_by_class["pneumonia"][:4], "p")
    (src / "effusion").mkdir()
    (src / "effusion" / "notes.txt").write_text("no images yet")
    with pytest.raises(InputError, match="effusion"):
        get_importer("folder")(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_with_one_class(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> None:
    _write_pngs(tmp_path / "src" / "normal", pneumonia_by_class["normal"][:4], "n")
    with pytest.raises(InputError, match="two class"):
        get_importer("folder")(tmp_path / "src", tmp_path / "out")
    with pytest.raises(InputError, match="not a folder"):
        get_importer("folder")(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- csv


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture()
def csv_images(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> list[dict[str, str]]:
    """Rows (image relative to tmp_path, label, patient_id) for 16 real PNGs in tmp_path/imgs."""
    rows = []
    for name, images in pneumonia_by_class.items():
        _write_pngs(tmp_path / "imgs", images[:8], name)
        rows += [{"image": f"imgs/{name}{i:03d}.png", "label": name, "patient_id": f"{name}{i // 2}"} for i in range(8)]
    return rows


def test_csv_relative_paths_and_patients(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    table = _write_csv(tmp_path / "table.csv", csv_images)
    ds = get_importer("csv")(table, tmp_path / "out")
    assert ds.spec.classes == ["normal", "pneumonia"]
    assert ds.spec.task == "classification" and ds.spec.spatial_dims == 2
    assert len(ds.cases) == 16
    for row, case in zip(csv_images, ds.cases, strict=True):
        assert Path(case.image[0]) == (tmp_path / row["image"]).resolve()
        assert ds.spec.classes[int(case.target)] == row["label"]
        assert case.patient_id == row["patient_id"]
    patients: dict[str, set[str]] = {}
    for case in ds.cases:
        patients.setdefault(case.patient_id, set()).add(case.split)
    assert all(len(s) == 1 for s in patients.values())


def test_csv_missing_label_names_the_line(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    csv_images[3]["label"] = ""
    table = _write_csv(tmp_path / "table.csv", csv_images)
    with pytest.raises(InputError, match=r"line\(s\) 5") as info:
        get_importer("csv")(table, tmp_path / "out")
    assert info.value.path == table
    assert not (tmp_path / "out").exists()


def test_csv_multilabel(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    labels = ["effusion|mass", "mass", "effusion", "nodule|effusion|mass"]
    rows = [dict(r, label=labels[i % 4]) for i, r in enumerate(csv_images)]
    ds = get_importer("csv")(_write_csv(tmp_path / "t.csv", rows), tmp_path / "out")
    assert ds.spec.task == "multilabel"
    assert ds.spec.classes == ["effusion", "mass", "nodule"]
    assert [ds.label_vector(c) for c in ds.cases[:4]] == [[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 1]]


def test_csv_split_column(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    splits = ["train", "Validation", "test", "training"]
    rows = [dict(r, split=splits[i % 4]) for i, r in enumerate(csv_images)]
    ds = get_importer("csv")(_write_csv(tmp_path / "t.csv", rows), tmp_path / "out")
    assert [c.split for c in ds.cases[:4]] == ["train", "val", "test", "train"]


def test_csv_unknown_split(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    rows = [dict(r, split="holdout" if i == 6 else "train") for i, r in enumerate(csv_images)]
    with pytest.raises(InputError, match="line 8: unknown split 'holdout'"):
        get_importer("csv")(_write_csv(tmp_path / "t.csv", rows), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_csv_missing_image(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    csv_images[9]["image"] = "imgs/gone.png"
    table = _write_csv(tmp_path / "t.csv", csv_images)
    with pytest.raises(InputError, match="line 11") as info:
        get_importer("csv")(table, tmp_path / "out")
    assert info.value.path.name == "gone.png"
    assert not (tmp_path / "out").exists()


def test_csv_missing_column_and_single_class(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    rows = [{"path": r["image"], "label": r["label"]} for r in csv_images]
    with pytest.raises(InputError, match="'image'"):
        get_importer("csv")(_write_csv(tmp_path / "a.csv", rows), tmp_path / "out")
    ds = get_importer("csv")(_write_csv(tmp_path / "b.csv", rows), tmp_path / "out", image_column="path")
    assert len(ds.cases) == 16
    one_class = [dict(r, label="normal") for r in csv_images]
    with pytest.raises(InputError, match="two classes"):
        get_importer("csv")(_write_csv(tmp_path / "c.csv", one_class), tmp_path / "out2")


def test_multilabel_columns_must_match_the_catalog(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    arrays = medmnist_subset("pneumoniamnist")
    for split in ("train", "val", "test"):
        arrays[f"{split}_labels"] = np.zeros((len(arrays[f"{split}_images"]), 3), np.uint8)
    with pytest.raises(InputError, match="3 columns"):
        get_importer("medmnist")(write_npz(tmp_path / "src" / "chestmnist.npz", arrays), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_medmnist_rgb_archive(tmp_path: Path, medmnist_subset: Callable, write_npz: Callable) -> None:
    """Colour archives (PathMNIST, DermaMNIST, ...) are (N, H, W, 3): 2D with three channels, not 3D."""
    arrays = medmnist_subset("pneumoniamnist")
    for split in ("train", "val", "test"):
        gray = arrays[f"{split}_images"]
        arrays[f"{split}_images"] = np.stack([gray, 255 - gray, gray // 2], axis=-1)  # (N, 28, 28, 3)
    ds = get_importer("medmnist")(write_npz(tmp_path / "src" / "my_rgb.npz", arrays), tmp_path / "out")
    assert ds.spec.spatial_dims == 2
    assert ds.spec.channels == ["red", "green", "blue"]
    png = np.asarray(PILImage.open(ds.image_paths(ds.split("val")[2])[0]))
    np.testing.assert_array_equal(png, arrays["val_images"][2])


def test_medmnist_archive_of_the_wrong_dimensionality(
    tmp_path: Path, medmnist_subset: Callable, write_npz: Callable
) -> None:
    arrays = medmnist_subset("pneumoniamnist")  # 2D images under a 3D catalog name
    with pytest.raises(InputError, match="adrenalmnist3d is 3D"):
        get_importer("medmnist")(write_npz(tmp_path / "src" / "adrenalmnist3d.npz", arrays), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- image_roots


def test_folder_records_its_folder_and_keeps_linked_paths(
    tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]
) -> None:
    """The folder importer lists the folder it was given under image_roots, and writes the paths it found there
    as found: a linked file stays under the folder (its target elsewhere is not what the dataset references)."""
    real = tmp_path / "real"
    for name, images in pneumonia_by_class.items():
        _write_pngs(real / name, images[:4], name[:2])
    src = tmp_path / "src"
    for path in sorted(real.rglob("*.png")):
        (src / path.parent.name).mkdir(parents=True, exist_ok=True)
        (src / path.parent.name / path.name).symlink_to(path)
    ds = get_importer("folder")(src, tmp_path / "out")
    assert ds.spec.image_roots == [str(src)]
    assert all(Path(c.image[0]).parent.parent == src for c in ds.cases)
    assert load_dataset(tmp_path / "out").cases == ds.cases


def test_csv_records_the_folders_it_lists(tmp_path: Path, pneumonia_by_class: dict[str, np.ndarray]) -> None:
    """Importing a table of absolute paths is the choice to reference those folders: they are recorded, and
    only they; many folders are merged upwards into a few common ones."""
    first, second = tmp_path / "site_a" / "xray", tmp_path / "site_b"
    _write_pngs(first, pneumonia_by_class["normal"][:4], "n")
    _write_pngs(second, pneumonia_by_class["pneumonia"][:4], "p")
    rows = [
        {"image": str(p), "label": p.parent.name} for p in sorted(first.glob("*.png")) + sorted(second.glob("*.png"))
    ]
    (tmp_path / "lists").mkdir()
    ds = get_importer("csv")(_write_csv(tmp_path / "lists" / "t.csv", rows), tmp_path / "out")
    assert ds.spec.image_roots == [str(first), str(second)]
    assert load_dataset(tmp_path / "out").cases == ds.cases

    per_patient = tmp_path / "study"  # one folder per patient, 20 of them: too many to list one by one
    rows = []
    for i, image in enumerate(
        pneumonia_by_class["normal"][:10].tolist() + pneumonia_by_class["pneumonia"][:10].tolist()
    ):
        folder = per_patient / f"patient{i:02d}"
        _write_pngs(folder, np.array([image], np.uint8), "scan")
        rows.append({"image": str(folder / "scan000.png"), "label": "normal" if i < 10 else "pneumonia"})
    ds = get_importer("csv")(_write_csv(tmp_path / "lists" / "many.csv", rows), tmp_path / "out_many")
    assert ds.spec.image_roots == [str(per_patient)]


def test_csv_relative_paths_record_their_folder(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    ds = get_importer("csv")(_write_csv(tmp_path / "table.csv", csv_images), tmp_path / "out")
    assert ds.spec.image_roots == [str(tmp_path / "imgs")]


def test_medmnist_references_nothing_outside(small_pneumonia_npz: Path, tmp_path: Path) -> None:
    ds = get_importer("medmnist")(small_pneumonia_npz, tmp_path / "out")
    assert ds.spec.image_roots == []
    assert all(not Path(c.image[0]).is_absolute() for c in ds.cases)


def test_imported_dataset_refuses_a_row_added_later(tmp_path: Path, csv_images: list[dict[str, str]]) -> None:
    """Whatever the importer recorded, a manifest row edited in afterwards to point elsewhere is refused."""
    get_importer("csv")(_write_csv(tmp_path / "table.csv", csv_images), tmp_path / "out")
    manifest = tmp_path / "out" / "manifest.csv"
    elsewhere = tmp_path / "private" / "secret.png"
    manifest.write_text(manifest.read_text() + f"extra,p,{elsewhere},0,train\n")
    with pytest.raises(InputError, match="case extra") as info:
        load_dataset(tmp_path / "out")
    assert info.value.path == manifest
