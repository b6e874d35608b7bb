"""Issue 16's defects, each reproduced: files from elsewhere cannot run code, interrupts are honest, non-finite
pixels never reach a model, resumes stay on their own data, plan values have ranges, errors name the file."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from medlens.cli.main import main

pytestmark = pytest.mark.xdist_group("hardening")
MEDLENS = str(Path(sys.executable).with_name("medlens"))
TINY = ["--set", "train.max_epochs=1", "--set", "train.budget_minutes=null", "--set", "model.kwargs.widen_factor=0.25",
        "--set", "train.explain_images=0"]  # fmt: skip


class Payload:
    """Unpickling this creates ``marker``: the proof that a load ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def payload_file(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"net.x": Payload(marker)}, "epoch": 0}, path)
    return path


def one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medlens: error:"), err
    assert "internal error" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, medmnist_subset: Callable[..., dict], write_npz: Callable) -> Path:
    """A tiny PneumoniaMNIST dataset (40/20/20 real images) and a one-epoch run on it."""
    root = tmp_path_factory.mktemp("hardening")
    npz = write_npz(root / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist"))
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(root / "ds")]) == 0
    assert main(["-q", "plan", str(root / "ds")]) == 0
    assert main(["-q", "train", str(root / "ds"), "--out", str(root / "run"), *TINY]) == 0
    return root


def copy_run(work: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(work / "run", run)
    return run


# 1. A received run folder, bundle or checkpoint cannot run code ---------------------------------------------------


def test_a_pickle_in_last_ckpt_is_refused_on_resume(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = copy_run(work, tmp_path)
    marker = tmp_path / "ran"
    (run / "seed_0" / "summary.json").unlink()  # unfinished: resume loads last.ckpt
    shutil.rmtree(run / "bundle")
    payload_file(run / "seed_0" / "checkpoints" / "last.ckpt", marker)
    assert main(["-q", "train", str(work / "ds"), "--out", str(run), "--resume"]) == 1
    one_line_error(capsys.readouterr().err, "last.ckpt", "refused")
    assert not marker.exists()


def test_a_pickle_in_best_ckpt_is_refused_even_when_every_seed_finished(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = copy_run(work, tmp_path)
    marker = tmp_path / "ran"
    payload_file(run / "seed_0" / "checkpoints" / "best.ckpt", marker)
    assert main(["-q", "train", str(work / "ds"), "--out", str(run), "--resume"]) == 1
    one_line_error(capsys.readouterr().err, "best.ckpt")
    assert not marker.exists()


def test_a_pickle_as_pretrained_weights_is_refused(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "ran"
    weights = payload_file(tmp_path / "weights.pt", marker)
    code = main(
        ["-q", "train", str(work / "ds"), "--out", str(tmp_path / "r"), *TINY, "--set", f"model.pretrained={weights}"]
    )
    assert code == 1
    one_line_error(capsys.readouterr().err, "weights.pt")
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_a_pickle_as_bundle_member_is_refused(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = copy_run(work, tmp_path)
    marker = tmp_path / "ran"
    payload_file(run / "bundle" / "member_0.safetensors", marker)
    image = next((work / "ds" / "images").glob("test_*.png"))
    assert main(["-q", "predict", str(run), str(image), "--out", str(tmp_path / "p")]) == 1
    one_line_error(capsys.readouterr().err, "member_0.safetensors")
    assert not marker.exists() and not (tmp_path / "p").exists()


def test_checkpoints_medlens_writes_load_without_pickle(work: Path) -> None:
    from medlens.training.fitting import read_checkpoint

    for name in ("best.ckpt", "last.ckpt"):
        ckpt = read_checkpoint(work / "run" / "seed_0" / "checkpoints" / name)
        assert "state_dict" in ckpt and ckpt["epoch"] >= 0


# 2. Interrupts --------------------------------------------------------------------------------------------------


def interrupt(
    args: list[str], sig: signal.Signals, when: Callable[[], bool], timeout: float = 120
) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([MEDLENS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_import_exits_non_zero_and_leaves_nothing(
    sig: signal.Signals, data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dataset"
    started = lambda: any(tmp_path.glob(".dataset.*.partial/images/*.png"))  # noqa: E731
    npz = str(data_root / "medmnist" / "pneumoniamnist.npz")
    done = interrupt(["import", "medmnist", npz, "--out", str(out)], sig, started)
    assert done.returncode == 128 + sig
    assert done.stderr.strip().splitlines()[-1].startswith(f"medlens: interrupted by {sig.name}")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".dataset*"))


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_train_keeps_resumable_state(sig: signal.Signals, work: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = run / "seed_0" / "checkpoints" / "last.ckpt"
    args = ["-q", "train", str(work / "ds"), "--out", str(run), *TINY, "--set", "train.max_epochs=8"]
    done = interrupt(args, sig, last.is_file)
    assert done.returncode == 128 + sig, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"medlens: interrupted by {sig.name}") and "--resume" in line
    assert last.is_file() and not (run / "bundle").exists()
    epochs_before = json.loads(json.dumps(torch.load(last, weights_only=True)["epoch"]))
    resumed = subprocess.run(
        [MEDLENS, "-q", "train", str(work / "ds"), "--out", str(run), "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run / "seed_0" / "summary.json").read_text())
    assert summary["epochs"] == 8
    sessions = sorted(p.parent.name for p in run.glob("seed_0/logs/session_*/metrics.csv"))
    assert sessions == ["session_0", "session_1"]
    import csv

    first = {
        int(r["epoch"]) for r in csv.DictReader(open(run / "seed_0/logs/session_0/metrics.csv")) if r.get("val_auc")
    }
    second = {
        int(r["epoch"]) for r in csv.DictReader(open(run / "seed_0/logs/session_1/metrics.csv")) if r.get("val_auc")
    }
    assert second and min(second) >= epochs_before  # the resumed session went on from the checkpoint's epoch
    if first:  # the killed session's CSV log may end before its last epoch (the logger writes in batches)
        assert max(first) <= epochs_before and min(second) > max(first)  # nothing trained twice


# 3. Non-finite pixels -------------------------------------------------------------------------------------------


def nan_volume(path: Path) -> Path:
    import nibabel as nib

    array = np.random.default_rng(0).normal(size=(28, 28, 28)).astype(np.float32)
    array[3, 4, 5] = np.nan
    array[6, 7, 8] = np.inf
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def test_training_data_with_nan_pixels_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import nibabel as nib

    folder = tmp_path / "src"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            data = np.random.default_rng(i).normal(size=(16, 16, 16)).astype(np.float32)
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / name / f"{i}.nii.gz"))
    bad = nan_volume(folder / "a" / "0.nii.gz")
    assert main(["-q", "import", "folder", str(folder), "--out", str(tmp_path / "ds"), "--seed", "1"]) == 0
    assert main(["-q", "plan", str(tmp_path / "ds")]) == 1
    one_line_error(capsys.readouterr().err, str(bad.name), "NaN or infinite")


def test_prediction_json_is_standard(work: Path, tmp_path: Path) -> None:
    image = next((work / "ds" / "images").glob("test_*.png"))
    assert main(["-q", "predict", str(work / "run"), str(image), "--out", str(tmp_path / "p")]) == 0

    def refuse(value: str) -> float:
        raise ValueError(f"non-standard JSON constant {value}")

    for path in [*(tmp_path / "p").glob("*.json"), *(work / "run").rglob("*.json")]:
        json.loads(path.read_text(), parse_constant=refuse)


# 5. A resume stays on the run's own data ----------------------------------------------------------------------


def test_resume_with_another_dataset_is_refused(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = copy_run(work, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(work / "ds", other)
    before = (run / "bundle" / "bundle.yaml").read_text()
    assert main(["-q", "train", str(other), "--out", str(run), "--resume"]) == 1
    one_line_error(capsys.readouterr().err, "not this run's dataset")
    assert (run / "bundle" / "bundle.yaml").read_text() == before


def test_resume_after_the_manifest_changed_is_refused(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = copy_run(work, tmp_path)
    import yaml

    data = tmp_path / "ds"
    shutil.copytree(work / "ds", data)
    info = yaml.safe_load((run / "run.yaml").read_text())
    info["dataset"] = str(data.resolve())
    (run / "run.yaml").write_text(yaml.safe_dump(info))
    manifest = data / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",train\n", ",val\n", 1))
    assert main(["-q", "train", str(data), "--out", str(run), "--resume"]) == 1
    one_line_error(capsys.readouterr().err, "manifest.csv", "changed")


# 6. Plan values have ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=-4", "train.batch_size"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=nan", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("augment.spatial_probability=1.5", "augment.spatial_probability"),
        ("data.std=0", "data.std"),
        ("train.budget_minutes=-3", "train.budget_minutes"),
    ],
)
def test_out_of_range_plan_values_are_refused(
    override: str, key: str, work: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["-q", "train", str(work / "ds"), "--out", str(out), "--set", override]) == 1
    err = capsys.readouterr().err
    one_line_error(err, key)
    assert any(word in err for word in ("greater", "less", "finite", "in [")), err
    assert not out.exists()


# 8. Errors name the file --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        "not yaml: [",
        "- a list\n",
        "\xff\xfe bytes",
        "format: medlens-bundle/1\nplan: {task: nope}\nmembers: [m.safetensors]\n",
    ],
    ids=["bad-yaml", "not-a-mapping", "not-utf8", "unknown-task"],
)
def test_a_damaged_bundle_yaml_is_named(damage: str, work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = copy_run(work, tmp_path)
    (run / "bundle" / "bundle.yaml").write_bytes(damage.encode("latin-1"))
    image = next((work / "ds" / "images").glob("test_*.png"))
    assert main(["-q", "predict", str(run), str(image), "--out", str(tmp_path / "p")]) == 1
    one_line_error(capsys.readouterr().err, "bundle.yaml")


def test_an_out_that_is_a_file_is_named(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    image = next((work / "ds" / "images").glob("test_*.png"))
    assert main(["-q", "predict", str(work / "run"), str(image), "--out", str(target)]) == 1
    one_line_error(capsys.readouterr().err, "results.txt", "is a file")
    assert target.read_text() == "keep me"


def test_finite_numbers_only_in_every_metrics_file(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", str(work / "run"), "--out", str(out), "--bootstrap", "20"]) == 0
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    values = json.loads(text)
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in values.values())
