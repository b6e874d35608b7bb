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
from pathlib import Path

import pytest
import yaml

from import_inputs import IMPORTERS, importer_for
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


KINDS = ["medmnist", "folder", "csv", "voc", "coco", "yolo", "msd", "pairs", "visits"]


def test_every_importer_is_covered() -> None:
    from medlens.cli.main import main as _  # noqa: F401  (registers the command-line importers)
    from medlens.data.importers import list_importers

    # dicomweb reads from a server, not from paths: its output rules are tested against a real Orthanc in
    # tests/pacs/test_import_dicomweb.py
    assert sorted(KINDS) == sorted(IMPORTERS) == sorted(set(list_importers()) - {"dicomweb"})


@pytest.mark.parametrize("kind", KINDS)
def test_import_refuses_existing_and_unmarked_folders_and_replaces_its_own(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    importer = importer_for(kind, tmp_path, request)
    out = tmp_path / "out"
    before = users_folder(out)
    fails(importer.args(out), capsys, "not empty", "--overwrite")
    fails(importer.args(out, "--overwrite"), capsys, "not made by medlens")
    assert checksums(out) == before
    fresh = tmp_path / "dataset"
    assert main(importer.args(fresh, out_flag="-o")) == 0
    assert (fresh / ".medlens").is_file() and (fresh / "dataset.yaml").is_file()
    (fresh / "dataset.yaml").write_text((fresh / "dataset.yaml").read_text() + "# edited\n")
    fails(importer.args(fresh), capsys, "not empty")
    assert (fresh / "dataset.yaml").read_text().endswith("# edited\n")
    assert main(importer.args(fresh, "--overwrite", out_flag="-o")) == 0
    assert not (fresh / "dataset.yaml").read_text().endswith("# edited\n")  # replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


TIES = [(kind, where) for kind in KINDS for where in ("equal", "inside", "holding")]
TIES.remove(("medmnist", "inside"))  # its input is one file: nothing can lie inside it
TIES.remove(("visits", "inside"))  # likewise


@pytest.mark.parametrize(("kind", "where"), TIES)
def test_import_out_tied_to_an_input_is_refused(
    kind: str, where: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    importer = importer_for(kind, tmp_path, request)
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
        "train": ["-q", "train", str(ds), "-o", str(out), *tiny, "--set", "train.max_epochs=1"],
        "evaluate": ["-q", "evaluate", str(run), "-o", str(out), "--bootstrap", "0"],
        "predict": ["-q", "predict", str(run), str(scans), "-o", str(out)],
        "export": ["-q", "export", str(run), "-o", str(out)],
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
