"""MSD and pairs importers on real hippocampus cases, and the bad input they must refuse by name."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medlens.core.errors import InputError
from medlens.data.dataset import load_dataset
from medlens.data.importers import get_importer, list_importers


def test_registered() -> None:
    assert {"msd", "pairs"} <= set(list_importers())


def test_msd_import(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    dataset = get_importer("msd")(small_msd(8), tmp_path / "ds")
    assert dataset.spec.task == "segmentation" and dataset.spec.spatial_dims == 3
    assert dataset.spec.classes == ["background", "Anterior", "Posterior"]
    assert dataset.spec.modality == "MR" and dataset.spec.channels == ["MRI"]
    assert len(dataset.cases) == 8 and {c.split for c in dataset.cases} == {"train", "val", "test"}
    assert all(Path(c.target).is_file() and Path(c.image[0]).is_file() for c in dataset.cases)
    assert load_dataset(tmp_path / "ds").cases[0].case_id.startswith("hippocampus_")


def test_msd_nnunet_v2_layout_with_two_channels(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    src = small_msd(3)
    v2 = tmp_path / "v2"
    (v2 / "imagesTr").mkdir(parents=True)
    (v2 / "labelsTr").mkdir()
    for label in sorted((src / "labelsTr").iterdir()):
        case = label.name.removesuffix(".nii.gz")
        (v2 / "labelsTr" / label.name).symlink_to(label.resolve())
        for c in range(2):
            (v2 / "imagesTr" / f"{case}_{c:04d}.nii.gz").symlink_to((src / "imagesTr" / label.name).resolve())
    spec = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": 1, "p": 2}}
    (v2 / "dataset.json").write_text(json.dumps(spec))
    dataset = get_importer("msd")(v2, tmp_path / "ds")
    assert dataset.spec.channels == ["T2", "ADC"] and len(dataset.cases[0].image) == 2
    assert dataset.spec.classes == ["background", "a", "p"]


def _pairs_2d(tmp_path: Path, n: int = 6) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (32, 40), dtype=np.uint8)
        mask = np.zeros((32, 40), np.uint8)
        mask[5 + i : 20, 8:30] = 255
        PILImage.fromarray(pixels).save(images / f"c{i}.png")
        PILImage.fromarray(mask).save(masks / f"c{i}_mask.png")
    return images, masks


def test_pairs_2d_binary_masks(tmp_path: Path) -> None:
    images, masks = _pairs_2d(tmp_path)
    dataset = get_importer("pairs")(images, masks, tmp_path / "ds")
    assert dataset.spec.spatial_dims == 2 and dataset.spec.classes == ["background", "foreground"]
    assert dataset.spec.source["label_values"] == "0,255"
    assert sorted(c.case_id for c in dataset.cases) == [f"c{i}" for i in range(6)]


def test_pairs_gif_and_palette_masks(tmp_path: Path) -> None:
    """GIF pictures with grey 0/255 GIF masks (as DRIVE ships them), and colour-palette PNG masks whose palette
    index is the class (as Pascal VOC): the grey ones map 255 to foreground, the palette ones keep indices."""
    from medlens.data.segmentation_cases import read_label_map as read_mask

    images, masks = _pairs_2d(tmp_path)
    for png in [*images.iterdir(), *masks.iterdir()]:
        PILImage.open(png).save(png.with_suffix(".gif"))
        png.unlink()
    assert PILImage.open(masks / "c0_mask.gif").mode == "P"
    from medlens.io import read_image

    picture = read_image(images / "c0.gif")
    assert picture.array.shape == (1, 32, 40)  # a grey GIF is one grey channel, not a palette expanded to RGB
    assert np.array_equal(picture.array[0], np.asarray(PILImage.open(images / "c0.gif").convert("L")))
    dataset = get_importer("pairs")(images, masks, tmp_path / "ds")
    assert dataset.spec.source["label_values"] == "0,255" and len(dataset.cases) == 6
    case = dataset.cases[1]
    mask = read_mask(dataset.root / case.target, 2, 2, case.case_id, label_values=[0, 255])
    assert mask.array.sum() == (20 - 6) * (30 - 8)

    palette_masks = tmp_path / "palette_masks"
    palette_masks.mkdir()
    colours = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)  # VOC: background black, class 1 red, 2 green
    for i in range(6):
        index = np.zeros((32, 40), np.uint8)
        index[5 + i : 20, 8:18], index[5:20, 22:30] = 1, 2
        picture = PILImage.fromarray(index, mode="P")
        picture.putpalette(colours)
        picture.save(palette_masks / f"c{i}.png")
    dataset = get_importer("pairs")(images, palette_masks, tmp_path / "ds_palette")
    assert dataset.spec.classes == ["background", "class_1", "class_2"]
    case = dataset.cases[0]
    mask = read_mask(dataset.root / case.target, 2, 3, case.case_id)
    assert np.bincount(mask.array.ravel()).tolist() == [32 * 40 - 15 * 10 - 15 * 8, 15 * 10, 15 * 8]


def test_pairs_3d_nifti(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    src = small_msd(4)
    dataset = get_importer("pairs")(src / "imagesTr", src / "labelsTr", tmp_path / "ds")
    assert dataset.spec.spatial_dims == 3 and dataset.spec.classes == ["background", "class_1", "class_2"]
    assert "label_values" not in dataset.spec.source


def _edit_label(folder: Path, edit: Callable[[np.ndarray], np.ndarray], affine_shift: float = 0.0) -> str:
    """Replace the first case's label by an edited real copy; return the case id."""
    entry = json.loads((folder / "dataset.json").read_text())["training"][0]
    path = folder / entry["label"]
    real = nib.load(str(path.resolve()))
    data = edit(np.asarray(real.dataobj))
    affine = real.affine.copy()
    affine[0, 3] += affine_shift
    path.unlink()
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path.name.removesuffix(".nii.gz")


@pytest.mark.parametrize(
    ("edit", "shift", "message"),
    [
        (lambda a: a[:-1], 0.0, "shape"),
        (lambda a: a, 5.0, "geometry"),
        (lambda a: np.where(a == 2, 7, a).astype(a.dtype), 0.0, "outside the 3 declared classes"),
    ],
    ids=["shape", "geometry", "labels"],
)
def test_msd_bad_case_named_and_nothing_written(
    small_msd: Callable[..., Path], tmp_path: Path, edit: Callable, shift: float, message: str
) -> None:
    folder = small_msd(4)
    case = _edit_label(folder, edit, shift)
    with pytest.raises(InputError, match=message) as info:
        get_importer("msd")(folder, tmp_path / "ds")
    assert case in str(info.value)
    assert not (tmp_path / "ds").exists()


def test_msd_missing_file_and_empty_mask(
    small_msd: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = small_msd(4)
    case = _edit_label(folder, np.zeros_like)
    with caplog.at_level(logging.WARNING):
        get_importer("msd")(folder, tmp_path / "ds")
    assert "empty mask" in caplog.text and case in caplog.text
    next((folder / "imagesTr").iterdir()).unlink()
    with pytest.raises(InputError, match="image file missing"):
        get_importer("msd")(folder, tmp_path / "ds2")
    assert not (tmp_path / "ds2").exists()


def test_pairs_unmatched_image(tmp_path: Path) -> None:
    images, masks = _pairs_2d(tmp_path, 3)
    (masks / "c1_mask.png").unlink()
    with pytest.raises(InputError, match=r"no mask .* c1\.png"):
        get_importer("pairs")(images, masks, tmp_path / "ds")


def test_pairs_dicom_folder_with_two_series(tmp_path: Path, data_root: Path) -> None:
    """A case folder holding two DICOM series is refused, naming the folder."""
    import pydicom

    images, masks = tmp_path / "images", tmp_path / "masks"
    case = images / "case1"
    case.mkdir(parents=True)
    masks.mkdir()
    series = sorted((data_root / "dicom" / "sag_anon_mr_t1_series").glob("*.dcm"))[:4]
    second = pydicom.uid.generate_uid()
    for i, path in enumerate(series):
        ds = pydicom.dcmread(path)
        if i >= 2:
            ds.SeriesInstanceUID = second
        ds.save_as(case / path.name)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(masks / "case1.nii.gz"))
    with pytest.raises(InputError, match="2 series") as info:
        get_importer("pairs")(images, masks, tmp_path / "ds", classes=["background", "x"])
    assert "case1" in str(info.value)
    assert not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------------------------- paths stay inside


def test_msd_records_its_folder_and_keeps_linked_paths(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    """The fixture links real files into the task folder: the manifest refers to the links, inside the folder
    given (image_roots), not to where they point."""
    folder = small_msd(3)
    dataset = get_importer("msd")(folder, tmp_path / "ds")
    assert dataset.spec.image_roots == [str(folder)]
    for case in dataset.cases:
        assert Path(case.image[0]).parent == folder / "imagesTr" and Path(case.target).parent == folder / "labelsTr"


@pytest.mark.parametrize("key", ["image", "label"])
def test_msd_entry_outside_the_task_folder_is_refused(
    small_msd: Callable[..., Path], hippocampus_root: Path, tmp_path: Path, key: str
) -> None:
    folder = small_msd(3)
    raw = json.loads((folder / "dataset.json").read_text())
    raw["training"][1][key] = str(hippocampus_root / raw["training"][1][key])  # a real file, elsewhere
    (folder / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="outside") as info:
        get_importer("msd")(folder, tmp_path / "ds")
    assert info.value.path == folder / "dataset.json"
    assert not (tmp_path / "ds").exists()


def test_pairs_record_both_folders(tmp_path: Path) -> None:
    images, masks = _pairs_2d(tmp_path, 3)
    dataset = get_importer("pairs")(images, masks, tmp_path / "ds")
    assert dataset.spec.image_roots == [str(images), str(masks)]


# --------------------------------------------------------------------------------------------- broken text files


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str], path: Path) -> str:
    """Run the command line in-process; it must fail with one ``medlens: error: <path>: ...`` line."""
    from medlens.cli.main import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("medlens:")]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert lines[0].startswith(f"medlens: error: {path}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda raw: raw["training"], "mapping"),
        (lambda raw: dict(raw, training=[{"image": "./imagesTr/x.nii.gz"}]), "label"),
        (lambda raw: dict(raw, training=["./imagesTr/x.nii.gz"]), "training"),
        (lambda raw: dict(raw, modality={"first": "MRI"}), "modality"),
        (lambda raw: dict(raw, labels={"0": "background", "1": {"a": 1}}), "labels"),
    ],
    ids=["list", "no_label", "entry_not_mapping", "channel_word_keys", "label_name_mapping"],
)
def test_broken_msd_dataset_json(
    small_msd: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable, needle: str
) -> None:
    folder = small_msd(3)
    spec = folder / "dataset.json"
    spec.write_text(json.dumps(edit(json.loads(spec.read_text()))))
    out = tmp_path / "ds"
    assert needle in _cli_error(["import", "msd", str(folder), "--out", str(out)], capsys, spec)
    assert not out.exists()


def test_msd_dataset_json_not_utf8(
    small_msd: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = small_msd(3)
    spec = folder / "dataset.json"
    spec.write_bytes(spec.read_bytes().replace(b'"name"', '"n\xe4me"'.encode("latin-1"), 1))
    out = tmp_path / "ds"
    assert "UTF-8" in _cli_error(["import", "msd", str(folder), "--out", str(out)], capsys, spec)
    assert not out.exists()
