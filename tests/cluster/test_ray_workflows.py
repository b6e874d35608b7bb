"""``medlens predict --ray`` and ``medlens tune`` against a real Ray cluster that this module starts on 127.0.0.1.

One head node (``ray start --head --block``, two CPUs) serves every test here and is stopped by its process group
at the end; the tests connect to it by address, as a user of a cluster does.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.cli.main import main
from medlens.cluster.session import ray_session
from medlens.core.errors import InputError
from medlens.tasks.base import load_bundle
from medlens.workflows.batch_prediction import predict_on_ray
from medlens.workflows.tuning import tune
from serving import free_port
from suite_support import missing


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a one-node Ray cluster (2 CPUs) on 127.0.0.1, started for this module."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.is_file():
        missing("the ray command (pip install 'ray[data,tune]')")
    port = free_port()
    home = tmp_path_factory.mktemp("ray_home")
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "MEDLENS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # the GCS answers on the port once the head is up
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up on port {port} (exit code {head.poll()})")
            time.sleep(0.2)
        address = f"127.0.0.1:{port}"
        with ray_session(address):  # one connection for the module: each command below reuses it
            yield address
    finally:  # the node's processes by their ids (its workers run in sessions of their own), never 'ray stop'
        import psutil

        processes = [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=3)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        head.wait()


def _pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, pixels in enumerate(images):
        paths.append(folder / f"xray_{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _outputs(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _same_prediction(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, abs=1e-6), key
        elif isinstance(value, dict):
            _same_prediction(value, b[key])
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert b[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert b[key] == value, key


def test_predict_on_ray_equals_single_process_and_resumes(
    pneumonia_run: Path, ray_cluster: str, tmp_path: Path, medmnist_subset
) -> None:
    images = medmnist_subset("pneumoniamnist", 0, 0, 20)["test_images"]
    paths = _pngs(tmp_path / "xrays", images)
    run = pneumonia_run / "run"
    assert main(["-q", "predict", str(run), str(tmp_path / "xrays"), "--out", str(tmp_path / "single")]) == 0
    assert main(["-q", "predict", str(run), str(tmp_path / "xrays"), "--out", str(tmp_path / "ray"),
                 "--ray", ray_cluster, "--actors", "1"]) == 0  # fmt: skip

    single, ray = _outputs(tmp_path / "single"), _outputs(tmp_path / "ray")
    assert len(single) == 20 and single.keys() == ray.keys()
    for name in single:
        _same_prediction(single[name], ray[name])
    with open(tmp_path / "single" / "predictions.csv") as a, open(tmp_path / "ray" / "predictions.csv") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["input"] for r in rows_a] == [r["input"] for r in rows_b] == [str(p) for p in paths]
    assert [(r["prediction"], r["refer"]) for r in rows_a] == [(r["prediction"], r["refer"]) for r in rows_b]
    assert sorted(p.name for p in (tmp_path / "single").iterdir() if p.name != ".medlens") == sorted(
        p.name for p in (tmp_path / "ray").iterdir() if p.name not in (".medlens", ".journal")
    )

    # a re-run (here from a list of the same paths) predicts only what is missing, and leaves the rest untouched
    gone = ["xray_03", "xray_11", "xray_19"]
    for stem in gone:
        for path in (tmp_path / "ray").glob(f"{stem}.*"):
            path.unlink()
        (tmp_path / "ray" / ".journal" / f"{stem}.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.json")}
    listing = tmp_path / "xrays.txt"
    listing.write_text("# the archive\n" + "".join(f"xrays/{p.name}\n" for p in paths))
    rerun = [
        "-q",
        "predict",
        str(run),
        str(listing),
        "--out",
        str(tmp_path / "ray"),
        "--ray",
        ray_cluster,
        "--actors",
        "1",
    ]
    assert main(rerun) == 0
    again = _outputs(tmp_path / "ray")
    assert again.keys() == single.keys()
    for name in (f"{stem}.json" for stem in gone):
        _same_prediction(single[name], again[name])
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.json") if p.name in kept} == kept
    with open(tmp_path / "ray" / "predictions.csv") as b:
        assert [r["input"] for r in csv.DictReader(b)] == [r["input"] for r in rows_a]
    assert not (tmp_path / "ray" / ".journal" / "staging").exists()


def test_predict_on_ray_refuses_a_folder_it_did_not_start(pneumonia_run: Path, tmp_path: Path) -> None:
    xrays = tmp_path / "xrays"
    _pngs(xrays, np.zeros((1, 28, 28), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty"):  # refused before Ray starts
        predict_on_ray(pneumonia_run / "run", [xrays], tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_tune_runs_trials_and_keeps_the_best(pneumonia_run: Path, ray_cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = ["-q", "tune", str(pneumonia_run / "ds"), "--out", str(out), "--trials", "2", "--ray", ray_cluster,
            "--no-default-space", "--space", "optim.lr=loguniform(1e-4, 1e-2)",
            "--space", "augment.translate=choice(0.0, 0.1)",
            "--set", "train.max_epochs=2", "--set", "train.budget_minutes=null", "--set", "train.batch_size=16",
            "--set", "model.kwargs.widen_factor=0.25", "--set", "train.explain_images=0"]  # fmt: skip
    assert main(args) == 0
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trial"] for r in rows] == ["trial_00", "trial_01"]
    summary = json.loads((out / "tune.json").read_text())
    finished = [r for r in rows if r["status"] == "finished"]
    assert finished and summary["best"]["trial"] == max(finished, key=lambda r: float(r["best_val_auc"]))["trial"]
    for row in rows:  # each trial is an ordinary run whose overrides are the values drawn for it
        recorded = (out / "trials" / row["trial"] / "run.yaml").read_text()
        assert f"optim.lr={row['optim.lr']}" in recorded and f"augment.translate={row['augment.translate']}" in recorded
        assert 1e-4 <= float(row["optim.lr"]) <= 1e-2
    assert (out / "best" / "bundle" / "bundle.yaml").is_file()
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "optim.lr" in (out / "search_space.yaml").read_text()
    xray = _pngs(tmp_path / "xrays", np.zeros((1, 28, 28), np.uint8))[0]
    assert load_bundle(out / "best").predict(xray).label in ("normal", "pneumonia")  # the best run is a usable model
    with pytest.raises(InputError, match="exists and is not empty"):  # refused without --overwrite
        tune(pneumonia_run / "ds", out, trials=1, address=ray_cluster)
    # the command line: -o, --overwrite, and the budget, ASHA and seed options reach the record
    before = (out / "tune.json").read_bytes()
    short = ["-o" if a == "--out" else a for a in args if a not in ("--trials", "2")]
    assert main([*short, "--trials", "1", "--budget", "2m"]) == 1 and (out / "tune.json").read_bytes() == before
    again = [*short, "--trials", "1", "--budget", "2m", "--grace-epochs", "2", "--reduction-factor", "2",
             "--seed", "7", "--overwrite"]  # fmt: skip
    assert main(again) == 0
    record = json.loads((out / "tune.json").read_text())
    assert record["scheduler"]["grace_epochs"] == 2 and record["scheduler"]["reduction_factor"] == 2
    assert record["budget_minutes"] == 2 and record["seed"] == 7 and record["trials"] == 1
