"""``medlens explain`` as a user runs it (the shared ``pneumonia_run``): ``--score`` writes ``faithfulness.json`` in
exactly the schema of the issue, the output folder rules of every writing command, and errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlens.cli.main import main

INTERVAL = {"value", "ci95"}


def test_score_writes_faithfulness_json_in_its_schema(pneumonia_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "faithfulness"
    args = ["explain", str(pneumonia_run / "run"), "--score", "--dataset", str(pneumonia_run / "ds")]
    assert main(["-q", *args, "--split", "test", "--images", "2", "--out", str(out)]) == 0
    scores = json.loads((out / "faithfulness.json").read_text())
    assert set(scores) == {"methods", "baselines", "default"}
    methods = ["gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients"]
    assert list(scores["methods"]) == methods and scores["default"] in methods
    for entry in scores["methods"].values():
        assert set(entry) == {"deletion_auc", "insertion_auc", "randomization_similarity"}
        for metric in entry.values():
            assert set(metric) == INTERVAL and len(metric["ci95"]) == 2
            assert metric["ci95"][0] <= metric["value"] <= metric["ci95"][1]
        assert 0.0 <= entry["randomization_similarity"]["value"] <= 1.0
    assert set(scores["baselines"]) == {"random"}
    assert set(scores["baselines"]["random"]) == {"deletion_auc", "insertion_auc"}
    assert all(set(m) == INTERVAL for m in scores["baselines"]["random"].values())
    scoring = json.loads((out / "scoring.json").read_text())
    assert scoring["n_images"] == 2 and scoring["dataset"]["split"] == "test"
    assert scoring["why"].startswith(scores["default"] + ": ") and scoring["prediction_seconds_per_image"] > 0
    assert set(scoring["timing"]) == set(methods)
    assert all(t["seconds_per_image"] > 0 and t["time_ratio_to_prediction"] > 0 for t in scoring["timing"].values())
    assert (out / ".medlens").is_file()


def test_explain_writes_every_file_and_its_index(pneumonia_run: Path, tmp_path: Path) -> None:
    from medlens import load_bundle

    pictures = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[:2]
    out = tmp_path / "explained"
    classes = load_bundle(pneumonia_run / "run").class_names
    args = ["-q", "explain", str(pneumonia_run / "run"), *map(str, pictures), "-o", str(out), "--target", classes[1]]
    assert main([*args, "--method", "eigencam"]) == 0
    for picture in pictures:
        info = json.loads((out / f"{picture.stem}_eigencam.json").read_text())
        assert info["target"] == classes[1] and info["source"] == str(picture)
        assert info["files"] == {"overlay": f"{picture.stem}_eigencam.png", "map": f"{picture.stem}_eigencam.npz"}
        assert all((out / name).is_file() for name in info["files"].values())
    assert len((out / "explanations.csv").read_text().splitlines()) == 3 and not (out / "skipped.csv").exists()


def test_explain_never_writes_over_a_users_folder(pneumonia_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    picture = next((pneumonia_run / "ds" / "images").glob("test_*.png"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    args = ["explain", str(pneumonia_run / "run"), str(picture), "--out", str(out)]
    for extra in ([], ["--overwrite"]):
        assert main([*args, *extra]) == 1
        assert str(out) in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "my notes"
    made = tmp_path / "made"
    assert main(["-q", *args[:3], "--out", str(made)]) == 0
    assert main(["-q", *args[:3], "--out", str(made)]) == 1  # its own folder too, unless --overwrite
    assert main(["-q", *args[:3], "--out", str(made), "--overwrite"]) == 0
    inside = pneumonia_run / "run" / "explained"
    assert main(["-q", "explain", str(pneumonia_run / "run"), str(picture), "--out", str(inside)]) == 1
    assert not inside.exists()


def test_errors_name_the_file(pneumonia_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    good = next((pneumonia_run / "ds" / "images").glob("test_*.png"))
    run = str(pneumonia_run / "run")
    assert main(["explain", run, str(broken), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a").exists()  # nothing half-written
    assert main(["-q", "explain", run, str(good), str(broken), "--out", str(tmp_path / "b")]) == 0
    skipped = (tmp_path / "b" / "skipped.csv").read_text()
    assert str(broken) in skipped
    for args, needle in (
        ([str(good), "--method", "lime"], "--method"),
        ([str(good), "--target", "nothing"], "--target"),
        ([str(good), "--score"], "--score"),
        ([str(good), "--split", "test"], "--split"),
        (["--score", "--dataset", str(tmp_path / "nowhere")], "nowhere"),
        (["--score", "--images", "0"], "--images"),
    ):
        assert main(["explain", run, *args, "--out", str(tmp_path / "c")]) == 1, args
        assert needle in capsys.readouterr().err, args
    bad_run = tmp_path / "not_a_run"
    bad_run.mkdir()
    assert main(["explain", str(bad_run), str(good), "--out", str(tmp_path / "d")]) == 1
    assert "not_a_run" in capsys.readouterr().err


def test_explain_help_lists_the_methods(capsys: pytest.CaptureFixture[str]) -> None:
    from medlens.explanations import list_methods

    assert main(["explain", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert all(method in shown for method in list_methods()) and "faithfulness" in shown
