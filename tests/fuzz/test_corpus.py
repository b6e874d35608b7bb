"""Every malformed input of the corpus, through every command that takes it, ends cleanly.

For each (input kind, mutation, command) of :mod:`fuzz.corpus` the real command line runs in-process
(``medlens.cli.main.main``) and must end with one of:

- ``error``: a non-zero exit and stderr of exactly one line, ``medlens: error: ...``, naming the offending file
  or key (never ``internal error``, never a traceback);
- ``skip``: exit 0, the bad input reported as ``skipped <input>: <reason>`` (``predict`` and ``deid`` work
  through a batch, so the bad input sits beside a good one);
- ``valid``: exit 0, because the input is valid after all (the reason is written beside the mutation);

and in every case: no partial output (after a failure the output does not exist, and no ``*.partial`` file is
left anywhere), no input changed (sha256 of every file under the input folders, before and after, and no file
added to them), and no pickle payload ever unpickled (its marker file never appears).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fuzz import corpus
from fuzz.corpus import TINY, Built, Sources
from medlens.cli.main import main

# the libraries warn about the corrupt values on purpose; what matters is how medlens ends
pytestmark = [pytest.mark.xdist_group("fuzz"), pytest.mark.filterwarnings("ignore::UserWarning")]
FINGERPRINT = "fingerprint.json"  # medlens's cache of a dataset's measurements, kept in the dataset folder


@dataclass
class Case:
    """One case's folders and the fixtures its command may need (trained runs are made only when asked for)."""

    kind: str
    mutation: str
    command: str
    root: Path  # the case folder: input/ holds what the command reads, outputs go beside it
    sources: Sources
    request: pytest.FixtureRequest

    @property
    def input(self) -> Path:
        return self.root / "input"

    def fixture(self, name: str) -> Path:
        return Path(self.request.getfixturevalue(name))

    def bad(self, folder: Path | None = None) -> Built:
        """Build the case's malformed input into ``folder`` (by default the kind's good artifact, copied)."""
        folder = self.base() if folder is None else folder
        folder.mkdir(parents=True, exist_ok=True)
        mutation = corpus.MUTATIONS[self.kind][self.mutation]
        return mutation.build(folder, self.sources, corpus.rng_for(self.kind, self.mutation))

    def base(self) -> Path:
        """The good artifact a kind's mutations edit: a dataset (with its plan), or a trained run."""
        if self.kind in ("dataset", "plan", "set"):
            target = self.input / "ds"
            shutil.copytree(self.fixture("small_dataset"), target)
            if self.kind == "dataset":  # measured again, so that every image is read
                (target / FINGERPRINT).unlink()
            if self.kind == "plan" or (self.kind == "set" and self.command == "train"):  # train reads plan.yaml
                (target / "plan.yaml").write_text(self.request.getfixturevalue("fuzz_plan"))
            return target
        if self.kind in ("bundle", "run"):
            run, target = self.fixture("pneumonia_run"), self.input / "run"
            if self.kind == "bundle":  # what predict, evaluate and export read
                target.mkdir()
                shutil.copytree(run / "bundle", target / "bundle")
                for name in ("run.yaml", "plan.yaml"):
                    shutil.copy(run / name, target / name)
            else:  # an interrupted run: its member has no summary yet
                shutil.copytree(run, target)
                (target / "seed_0" / "summary.json").unlink()
            return target
        return self.input


@dataclass
class Setup:
    """What a command runs on a case: its arguments, what it must leave alone, what it may create."""

    argv: list[str]
    bad: Built
    watched: list[Path] = field(default_factory=list)  # inputs: byte-identical afterwards, nothing added
    outputs: list[Path] = field(default_factory=list)  # absent after a failure


# ---- the commands -----------------------------------------------------------------------------------------------


def info(case: Case) -> Setup:
    bad = case.bad(case.input)
    return Setup(["info", str(bad.path)], bad)


def convert(case: Case) -> Setup:
    bad = case.bad(case.input)
    out = case.root / "converted.npz"
    return Setup(["convert", str(bad.path), str(out)], bad, outputs=[out])


def predict(case: Case) -> Setup:
    good = corpus.write_xrays(case.input / "good", case.sources, range(1))[0]
    bad = case.bad(case.input / "bad")
    run, out = case.fixture("pneumonia_run"), case.root / "predictions"
    return Setup(["predict", str(run), str(good), str(bad.path), "--out", str(out), "--no-pictures"], bad, [run], [out])


def predict3d(case: Case) -> Setup:
    bad = case.bad(case.input)
    run, out = case.fixture("hippocampus_run"), case.root / "predictions"
    return Setup(["predict", str(run), str(bad.path), "--out", str(out), "--no-pictures"], bad, [run], [out])


def deid(case: Case) -> Setup:
    batch = case.input / "batch"
    bad = case.bad(batch)
    if bad.path.is_file():  # a single file: de-identified beside a good one
        (batch / "good.dcm").write_bytes(case.sources.ct_small)
        source = batch
    else:  # a series folder: its other slices are the good ones
        source = bad.path
    key = case.root / "deid.key"
    key.write_text("a-key-for-the-fuzz-corpus-0123456789\n")
    out = case.root / "deidentified"
    argv = ["deid", str(source), str(out), "--key", str(key), "--workers", "1"]
    return Setup(argv, bad, outputs=[out, case.root / "deidentified-quarantine"])


def import_folder(case: Case) -> Setup:
    if case.kind == "class_folder":
        bad = case.bad()
        folder = bad.path
    else:  # a malformed picture among good ones
        folder = case.input / "classes"
        corpus.class_folder(folder, case.sources)
        bad = case.bad(folder / "normal")
    out = case.root / "dataset"
    return Setup(["import", "folder", str(folder), "--out", str(out)], bad, outputs=[out])


def import_csv(case: Case) -> Setup:
    folder = case.input / "table"
    if case.kind == "table":
        bad = case.bad(folder)
    else:  # a malformed picture listed in a good table
        rows = corpus.table_folder(folder, case.sources)
        bad = case.bad(folder / "images")
        rows.append(f"images/{bad.path.name},normal,p99")
        (folder / "table.csv").write_text("image,label,patient_id\n" + "\n".join(rows) + "\n")
        bad = Built(folder / "table.csv", bad.names, bad.args)
    out = case.root / "dataset"
    return Setup(["import", "csv", str(bad.path), "--out", str(out), *bad.args], bad, outputs=[out])


def import_medmnist(case: Case) -> Setup:
    bad = case.bad(case.input)
    out = case.root / "dataset"
    return Setup(["import", "medmnist", str(bad.path), "--out", str(out)], bad, outputs=[out])


def import_msd(case: Case) -> Setup:
    task = case.input / "task"
    if case.kind == "msd":
        bad = case.bad()
        folder = bad.path
    else:  # a malformed image (or label) as one case of a good task folder
        training = corpus.write_msd(task, case.sources)
        _, image, label = case.sources.hippocampus[4]
        if case.kind == "nifti":
            bad = case.bad(task / "imagesTr")
            (task / "labelsTr" / bad.path.name).write_bytes(label)
        else:
            bad = case.bad(task / "labelsTr")
            (task / "imagesTr" / bad.path.name).write_bytes(image)
        training.append({"image": f"./imagesTr/{bad.path.name}", "label": f"./labelsTr/{bad.path.name}"})
        corpus.write_msd_json(task, training)
        folder = task
    out = case.root / "dataset"
    return Setup(["import", "msd", str(folder), "--out", str(out)], bad, outputs=[out])


def import_pairs(case: Case) -> Setup:
    images, masks = case.input / "images", case.input / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for case_id, image, label in case.sources.hippocampus[:4]:
        (images / f"{case_id}.nii.gz").write_bytes(image)
        (masks / f"{case_id}.nii.gz").write_bytes(label)
    _, image, label = case.sources.hippocampus[4]
    if case.kind == "nifti":
        bad = case.bad(images)
        (masks / bad.path.name).write_bytes(label)
    else:
        bad = case.bad(masks)
        (images / bad.path.name).write_bytes(image)
    out = case.root / "dataset"
    argv = ["import", "pairs", str(images), str(masks), "--out", str(out), "--classes", "background,anterior,posterior"]
    return Setup(argv, bad, outputs=[out])


def _detection_import(name: str) -> Callable[[Case], Setup]:
    def run(case: Case) -> Setup:
        bad = case.bad()
        out = case.root / "dataset"
        if name == "coco":
            argv = ["import", "coco", str(bad.path / "annotations.json"), str(bad.path / "images")]
        else:
            argv = ["import", name, str(bad.path)]
        return Setup([*argv, "--out", str(out), *bad.args], bad, outputs=[out])

    return run


def plan(case: Case) -> Setup:
    bad = case.bad()
    return Setup(["plan", str(bad.path), *bad.args], bad, outputs=[bad.path / "plan.yaml"])


def train(case: Case) -> Setup:
    bad = case.bad()
    out = case.root / "run"
    return Setup(["train", str(bad.path), "--out", str(out), *TINY, *bad.args], bad, outputs=[out])


def evaluate(case: Case) -> Setup:
    bad = case.bad()
    run, out = case.fixture("pneumonia_run"), case.root / "evaluation"
    argv = ["evaluate", str(run), "--dataset", str(bad.path), "--out", str(out), "--bootstrap", "10"]
    return Setup(argv, bad, [run], [out])


def predict_bundle(case: Case) -> Setup:
    good = corpus.write_xrays(case.input / "good", case.sources, range(1))[0]
    bad = case.bad()
    out = case.root / "predictions"
    return Setup(["predict", str(bad.path), str(good), "--out", str(out), "--no-pictures"], bad, outputs=[out])


def evaluate_bundle(case: Case) -> Setup:
    bad = case.bad()
    out = case.root / "evaluation"
    return Setup(["evaluate", str(bad.path), "--out", str(out), "--bootstrap", "10"], bad, outputs=[out])


def export(case: Case) -> Setup:
    bad = case.bad()
    out = case.root / "export"
    return Setup(["export", str(bad.path), "--out", str(out)], bad, outputs=[out])


def resume(case: Case) -> Setup:
    bad = case.bad()
    dataset = case.fixture("small_dataset")
    return Setup(["train", str(dataset), "--out", str(bad.path), "--resume"], bad, [dataset])


COMMANDS: dict[str, Callable[[Case], Setup]] = {
    "info": info,
    "convert": convert,
    "predict": predict,
    "predict3d": predict3d,
    "deid": deid,
    "import-folder": import_folder,
    "import-csv": import_csv,
    "import-medmnist": import_medmnist,
    "import-msd": import_msd,
    "import-pairs": import_pairs,
    "import-voc": _detection_import("voc"),
    "import-coco": _detection_import("coco"),
    "import-yolo": _detection_import("yolo"),
    "plan": plan,
    "train": train,
    "evaluate": evaluate,
    "predict-bundle": predict_bundle,
    "evaluate-bundle": evaluate_bundle,
    "export": export,
    "resume": resume,
}


# ---- the checks -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _command_tree_built_once() -> Iterator[None]:
    """Typer rebuilds the click command tree from the registered functions on every call (about 11 ms, a fifth of
    a case here); the tree never changes, so this module builds it once. ``main`` and every command run as ever."""
    import typer.main

    built = functools.cache(typer.main.get_command)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.main, "get_command", built)
        yield


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (or of ``folder`` itself when it is a file)."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _params() -> list[object]:
    params = []
    for kind, name, command in corpus.cases():
        expect, reason = corpus.expectation(kind, name, command)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if expect == "xfail" else []
        params.append(pytest.param(kind, name, command, id=f"{kind}-{name}-{command}", marks=marks))
    return params


@pytest.mark.parametrize(("kind", "mutation", "command"), _params())
def test_malformed_input_ends_cleanly(
    kind: str,
    mutation: str,
    command: str,
    tmp_path: Path,
    fuzz_sources: Sources,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = Case(kind, mutation, command, tmp_path, fuzz_sources, request)
    case.input.mkdir()
    setup = COMMANDS[command](case)
    watched = [case.input, *setup.watched]
    before = {str(w): checksums(w) for w in watched}
    capsys.readouterr()

    code = main(["-q", *setup.argv])
    captured = capsys.readouterr()
    err = captured.err

    expect, reason = corpus.expectation(kind, mutation, command)
    assert "Traceback" not in err and "internal error" not in err, err
    if expect in ("error", "xfail"):
        lines = err.strip().splitlines()
        assert code != 0, f"exit 0 for a malformed input; stdout:\n{captured.out}"
        assert len(lines) == 1 and lines[0].startswith("medlens: error: "), err
        assert setup.bad.names in lines[0], f"the error does not name {setup.bad.names!r}: {lines[0]}"
        for output in setup.outputs:
            assert not output.exists(), f"{output} left behind after a failure"
    elif expect == "skip":
        assert code == 0, err
        skipped = [line for line in err.splitlines() if line.startswith("skipped")]
        assert any(setup.bad.names in line for line in skipped), f"{setup.bad.names} not reported as skipped:\n{err}"
    else:
        assert code == 0, f"{reason}; but: {err}"
        skipped = [line for line in err.splitlines() if line.startswith("skipped") and setup.bad.names in line]
        assert not skipped, f"{reason}; but: {skipped}"
    assert not list(tmp_path.rglob("*.partial")), "a .partial file was left behind"
    assert not (tmp_path / corpus.MARKER).exists(), "a pickle payload was unpickled"
    after = {str(w): checksums(w) for w in watched}
    for folder in before:
        if command == "plan" and expect == "valid":  # planning writes plan.yaml into the dataset, by design
            after[folder].pop(str(Path(setup.bad.path) / "plan.yaml"), None)
        if command in ("plan", "train") and str(Path(setup.bad.path) / FINGERPRINT) not in before[folder]:
            after[folder].pop(str(Path(setup.bad.path) / FINGERPRINT), None)  # the dataset's measurement cache
        assert after[folder] == before[folder], f"{folder} changed"


# A few cases as real processes: the exit code the shell sees, and everything the process writes to stderr (libraries
# that print warnings or log through handlers of their own would show here, not in-process). Commands that import
# torch are left out: a fresh process spends seconds importing it.
IN_A_PROCESS = [
    ("nifti", "dim0_nine", "info"),  # nibabel logs through a stderr handler of its own
    ("dicom", "rescale_slope_text", "info"),  # pydicom warns about the value it cannot read
    ("npz", "pickled_object_array", "import-medmnist"),  # the payload must not run in a real process either
    ("dicom", "rle_syntax_on_native_pixels", "deid"),  # a skip: stderr holds the skip line and nothing else
]


@pytest.mark.parametrize(("kind", "mutation", "command"), [pytest.param(*c, id="-".join(c)) for c in IN_A_PROCESS])
def test_in_a_real_process(
    kind: str, mutation: str, command: str, tmp_path: Path, fuzz_sources: Sources, request: pytest.FixtureRequest
) -> None:
    import os
    import subprocess
    import sys

    import medlens

    case = Case(kind, mutation, command, tmp_path, fuzz_sources, request)
    case.input.mkdir()
    setup = COMMANDS[command](case)
    before = checksums(case.input)
    src = str(Path(medlens.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    env["MEDLENS_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "-q", *setup.argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = done.stderr.strip().splitlines()
    if corpus.expectation(kind, mutation, command)[0] == "skip":
        assert done.returncode == 0, done.stderr
        assert lines and all(line.startswith("skipped ") for line in lines), done.stderr
        assert setup.bad.names in lines[0]
    else:
        assert done.returncode == 1, done.stderr
        assert len(lines) == 1 and lines[0].startswith("medlens: error: ") and setup.bad.names in lines[0], done.stderr
        assert not any(output.exists() for output in setup.outputs)
    assert not (tmp_path / corpus.MARKER).exists()
    assert checksums(case.input) == before
