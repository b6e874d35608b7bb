"""Nothing is ever lost: every command that writes refuses to write over, into, or around what it did not make.

For each writing command (``import`` with each importer, ``plan``, ``train``, ``evaluate``, ``predict``,
``export``, ``convert``; ``deid`` has its own tests):

- an existing non-empty output folder is refused without ``--overwrite``, and left as it was;
- ``--overwrite`` refuses a folder without medlens's ``.medlens`` marker (a folder of the user's files stays
  byte for byte the same);
- ``--overwrite`` replaces a folder medlens made;
- an ``--out`` equal to, inside, or holding an input (or the run, or the dataset) is refused, even with
  ``--overwrite`` and even when the holding folder carries a marker, and nothing is deleted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

from medlens.cli.main import main

pytestmark = pytest.mark.integration


def checksums(*paths: Path) -> dict[str, str]:
    """SHA-1 of every file under ``paths`` (hidden files included), by path."""
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def users_folder(path: Path) -> dict[str, str]:
    """A folder of the user's own files (no marker); return its checksums."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "scan.dcm").write_bytes(bytes(range(256)) * 8)
    (path / "sub").mkdir()
    (path / "sub" / "more.txt").write_text("more")
    return checksums(path)


def mark(folder: Path) -> None:
    """Give ``folder`` a medlens marker, as if medlens had made it."""
    (folder / ".medlens").write_text(json.dumps({"kind": "test", "created": "2026-01-01T00:00:00+00:00"}) + "\n")


def fails(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(args) == 1, args
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    return err


# ---- importers --------------------------------------------------------------------------------------------------
@dataclass
class Importer:
    """How to call one importer: ``import KIND *inputs --out OUT *options``; ``guarded`` are the input paths."""

    kind: str
    inputs: list[Path]
    options: list[str]

    def args(self, out: Path, *extra: str) -> list[str]:
        return ["-q", "import", self.kind, *map(str, self.inputs), "--out", str(out), *self.options, *extra]


def _pictures(work: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """12 real PneumoniaMNIST pictures in class subfolders."""
    arrays = medmnist_subset("pneumoniamnist", 40, 1, 1)
    folder = work / "pictures"
    for name in ("normal", "pneumonia"):
        (folder / name).mkdir(parents=True)
    labels = arrays["train_labels"].reshape(-1)
    for k in (0, 1):
        for i in np.flatnonzero(labels == k)[:6]:
            PILImage.fromarray(arrays["train_images"][i]).save(folder / ("normal", "pneumonia")[k] / f"{i}.png")
    return folder


def _importer(kind: str, work: Path, request: pytest.FixtureRequest) -> Importer:
    subset = request.getfixturevalue("medmnist_subset")
    if kind == "medmnist":
        npz = work / "src" / "pneumoniamnist.npz"
        request.getfixturevalue("write_npz")(npz, subset("pneumoniamnist", 20, 10, 10))
        return Importer(kind, [npz], [])
    if kind in ("folder", "csv"):
        pictures = _pictures(work / "src", subset)
        if kind == "folder":
            return Importer(kind, [pictures], [])
        table = pictures / "labels.csv"
        rows = [f"{p.relative_to(pictures)},{p.parent.name}" for p in sorted(pictures.rglob("*.png"))]
        table.write_text("image,label\n" + "\n".join(rows) + "\n")
        return Importer(kind, [table], [])
    if kind in ("voc", "coco", "yolo"):
        from conftest import build_voc

        voc = build_voc(request.getfixturevalue("bccd_root"), work / "src" / "voc", 3, 2)
        if kind == "voc":
            return Importer(kind, [voc], [])
        from medlens.data.boxes import read_boxes
        from medlens.data.importers import get_importer

        dataset = get_importer("voc")(voc, work / "voc_ds")
        if kind == "coco":
            images, annotations = [], []
            for i, case in enumerate(dataset.cases, start=1):
                boxes, labels, (h, w) = read_boxes(dataset, case)
                images.append({"id": i, "file_name": Path(case.image[0]).name, "height": h, "width": w})
                for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
                    bbox = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
                    annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1,
                                        "iscrowd": 0, "bbox": bbox})  # fmt: skip
            categories = [{"id": k + 1, "name": n} for k, n in enumerate(dataset.spec.classes)]
            ann = voc / "instances.json"
            ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
            return Importer(kind, [ann, voc / "JPEGImages"], [])
        root = work / "src" / "yolo"
        for case in dataset.cases:
            boxes, labels, (h, w) = read_boxes(dataset, case)
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "labels").mkdir(parents=True, exist_ok=True)
            image = Path(case.image[0])
            shutil.copy(image, root / "images" / image.name)
            centre, extent = (boxes[:, :2] + boxes[:, 2:]) / 2 / [w, h], (boxes[:, 2:] - boxes[:, :2]) / [w, h]
            rows = zip(labels, centre, extent, strict=True)
            lines = [f"{k} {c[0]:.6f} {c[1]:.6f} {e[0]:.6f} {e[1]:.6f}" for k, c, e in rows]
            (root / "labels" / f"{image.stem}.txt").write_text("\n".join(lines) + "\n")
        (root / "data.yaml").write_text(yaml.safe_dump({"names": list(dataset.spec.classes)}))
        return Importer(kind, [root], [])
    from conftest import build_msd

    msd = build_msd(request.getfixturevalue("hippocampus_root"), work / "src" / "msd", 4)
    if kind == "msd":
        return Importer(kind, [msd], [])
    return Importer("pairs", [msd / "imagesTr", msd / "labelsTr"], [])


IMPORTERS = ["medmnist", "folder", "csv", "voc", "coco", "yolo", "msd", "pairs"]


@pytest.mark.parametrize("kind", IMPORTERS)
def test_import_refuses_existing_and_unmarked_folders_and_replaces_its_own(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    importer = _importer(kind, tmp_path, request)
    out = tmp_path / "out"
    before = users_folder(out)
    fails(importer.args(out), capsys, "not empty", "--overwrite")
    fails(importer.args(out, "--overwrite"), capsys, "not made by medlens")
    assert checksums(out) == before
    fresh = tmp_path / "dataset"
    assert main(importer.args(fresh)) == 0
    assert (fresh / ".medlens").is_file() and (fresh / "dataset.yaml").is_file()
    (fresh / "dataset.yaml").write_text((fresh / "dataset.yaml").read_text() + "# edited\n")
    fails(importer.args(fresh), capsys, "not empty")
    assert (fresh / "dataset.yaml").read_text().endswith("# edited\n")
    assert main(importer.args(fresh, "--overwrite")) == 0
    assert not (fresh / "dataset.yaml").read_text().endswith("# edited\n")  # replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


TIES = [(kind, where) for kind in IMPORTERS for where in ("equal", "inside", "holding")]
TIES.remove(("medmnist", "inside"))  # its input is one file: nothing can lie inside it


@pytest.mark.parametrize(("kind", "where"), TIES)
def test_import_out_tied_to_an_input_is_refused(
    kind: str, where: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    importer = _importer(kind, tmp_path, request)
    source = importer.inputs[0]
    if where == "inside" and source.is_file():  # a table or an annotations file: a folder of its images
        source = importer.inputs[-1] if importer.inputs[-1].is_dir() else next(source.parent.glob("*/*.png")).parent
    out = {"equal": source, "inside": source / "dataset", "holding": source.parent}[where]
    if where == "holding":
        mark(out)  # even a folder medlens made is not replaced when it holds an input
    protected = tmp_path / "src"
    before = checksums(protected)
    fails(importer.args(out, "--overwrite"), capsys, str(out))
    assert checksums(protected) == before
    assert not (source / "dataset").exists()


# ---- plan ---------------------------------------------------------------------------------------------------------
def test_plan_keeps_an_edited_plan_unless_overwrite(pneumonia_dataset, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    ds = pneumonia_dataset.root
    assert main(["-q", "plan", str(ds)]) == 0
    plan = ds / "plan.yaml"
    plan.write_text(plan.read_text() + "# my edit\n")
    text = plan.read_text()
    fails(["plan", str(ds)], capsys, "plan.yaml", "--overwrite")
    assert plan.read_text() == text
    assert main(["-q", "plan", str(ds), "--overwrite", "--set", "train.batch_size=8"]) == 0
    assert "# my edit" not in plan.read_text() and yaml.safe_load(plan.read_text())["train"]["batch_size"] == 8


# ---- train, evaluate, predict, export -----------------------------------------------------------------------------
@pytest.fixture()
def copied_run(pneumonia_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared classification run and its dataset (so a test may write around them)."""
    ds, run = tmp_path / "work" / "ds", tmp_path / "work" / "run"
    shutil.copytree(pneumonia_run / "ds", ds)
    shutil.copytree(pneumonia_run / "run", run)
    record = yaml.safe_load((run / "run.yaml").read_text())
    (run / "run.yaml").write_text(yaml.safe_dump(record | {"dataset": str(ds.resolve())}))
    return ds, run


def _scans(ds: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for image in sorted((ds / "images").glob("test_*.png"))[:3]:
        shutil.copy(image, folder / image.name)
    return folder


def _command(name: str, ds: Path, run: Path, scans: Path, out: Path, tiny: list[str]) -> list[str]:
    return {
        "train": ["-q", "train", str(ds), "--out", str(out), *tiny, "--set", "train.max_epochs=1"],
        "evaluate": ["-q", "evaluate", str(run), "--out", str(out), "--bootstrap", "0"],
        "predict": ["-q", "predict", str(run), str(scans), "--out", str(out)],
        "export": ["-q", "export", str(run), "--out", str(out)],
    }[name]


@pytest.mark.parametrize("name", ["train", "evaluate", "predict", "export"])
def test_model_commands_refuse_existing_and_unmarked_folders_and_replace_their_own(
    name: str, copied_run: tuple[Path, Path], tiny: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, run = copied_run
    scans = _scans(ds, tmp_path / "scans")
    out = tmp_path / "out"
    before = users_folder(out)
    fails(_command(name, ds, run, scans, out, tiny), capsys, "not empty", "--overwrite")
    fails([*_command(name, ds, run, scans, out, tiny), "--overwrite"], capsys, "not made by medlens")
    assert checksums(out) == before
    mine = tmp_path / "mine"
    assert main(_command(name, ds, run, scans, mine, tiny)) == 0
    assert (mine / ".medlens").is_file()
    (mine / "stale.txt").write_text("from before")
    fails(_command(name, ds, run, scans, mine, tiny), capsys, "not empty")
    assert main([*_command(name, ds, run, scans, mine, tiny), "--overwrite"]) == 0
    assert (mine / ".medlens").is_file() and not (mine / "stale.txt").exists()  # replaced as a whole


def _tied(name: str, ds: Path, run: Path, scans: Path) -> list[tuple[str, Path]]:
    """(what the output is tied to, where it would go) for each command."""
    if name == "train":
        return [("dataset", ds), ("dataset", ds / "runs" / "run"), ("dataset", ds.parent)]
    if name == "predict":
        return [("input", scans), ("input", scans / "out"), ("input", scans.parent), ("run folder", run),
                ("run folder", run / "predictions")]  # fmt: skip
    tied = [("run folder", run), ("run folder", run / "out"), ("run folder", run.parent)]
    if name == "evaluate":
        tied += [("dataset", ds), ("dataset", ds / "eval")]
    return tied


@pytest.mark.parametrize("name", ["train", "evaluate", "predict", "export"])
def test_model_commands_refuse_an_out_tied_to_their_inputs(
    name: str, copied_run: tuple[Path, Path], tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ds, run = copied_run
    scans = _scans(ds, ds.parent / "scans")
    mark(ds.parent)  # the holding folder looks medlens-made: only the tie to the input may refuse it
    before = checksums(ds.parent)
    for what, out in _tied(name, ds, run, scans):
        existed = out.exists()
        fails([*_command(name, ds, run, scans, out, tiny), "--overwrite"], capsys, what, str(out))
        assert out.exists() == existed
        assert checksums(ds.parent) == before, (name, out)  # every scan, the run and the dataset untouched


# ---- convert ------------------------------------------------------------------------------------------------------
def test_convert_never_writes_over_or_into_its_input(
    mr_series_dir: Path, hippocampus_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = tmp_path / "case.nii.gz"
    shutil.copy(next((hippocampus_root / "imagesTr").glob("*.nii.gz")), case)
    original = case.read_bytes()
    fails(["convert", str(case), str(case), "--overwrite"], capsys, "input")
    assert case.read_bytes() == original
    series = tmp_path / "series"
    shutil.copytree(mr_series_dir, series)
    before = checksums(series)
    fails(["convert", str(series), str(series / "volume.nii.gz")], capsys, "input")
    assert checksums(series) == before and not (series / "volume.nii.gz").exists()
    first = next(series.glob("*.dcm"))
    fails(["convert", str(first), str(first), "--overwrite"], capsys, "input")  # a DICOM is never replaced
    assert checksums(series) == before


def test_convert_refuses_an_existing_file_unless_overwrite(hippocampus_root: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    case = next((hippocampus_root / "imagesTr").glob("*.nii.gz"))
    out = tmp_path / "mine.nrrd"
    out.write_text("the user's file")
    fails(["convert", str(case), str(out)], capsys, "--overwrite")
    assert out.read_text() == "the user's file"
    assert main(["-q", "convert", str(case), str(out), "--overwrite"]) == 0  # a file: --overwrite is the consent
    assert out.read_bytes()[:4] == b"NRRD"
    folder = tmp_path / "folder.nrrd"
    folder.mkdir()
    fails(["convert", str(case), str(folder), "--overwrite"], capsys, "is a folder")
