"""Image embeddings in the sequence task: a table of visits whose ``xray`` column points to real PneumoniaMNIST
images (PNG files beside the table), embedded by a tiny trained medlens classifier (``pneumonia_run``) at import.

The subjects are built from real images and their real labels: each subject has 2 or 3 visits, each visit one
X-ray, and the outcome is the label of the last visit's X-ray, so the images carry the outcome and the tabular
column (the image's mean brightness, a measurement of the same picture) carries little of it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main

pytestmark = pytest.mark.integration
IMPORT = ["--task", "sequence", "--subject", "subject", "--order", "visit", "--target", "finding"]
QUICK = ["--set", "train.max_epochs=3", "--set", "train.early_stopping_patience=null", "--set",
         "train.budget_minutes=null"]  # fmt: skip


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, table: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return path


@pytest.fixture(scope="module")
def visits_with_images(real_data, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """24 subjects x 2-3 visits of real PneumoniaMNIST test images written as PNGs; ``visits.csv`` beside them."""
    from PIL import Image

    archive = np.load(real_data("medmnist/pneumoniamnist.npz"))
    images, labels = archive["test_images"], archive["test_labels"].reshape(-1)
    work = tmp_path_factory.mktemp("seqimg")
    (work / "images").mkdir()
    by_label = {k: list(np.flatnonzero(labels == k)) for k in (0, 1)}
    rng = np.random.default_rng(0)
    table = []
    for s in range(24):
        outcome = s % 2
        n = 2 + s % 3 // 2  # 2 or 3 visits
        for v in range(n):
            label = outcome if v == n - 1 else int(rng.integers(2))
            index = int(by_label[label].pop())
            name = f"images/s{s:02d}_v{v}.png"
            Image.fromarray(images[index]).save(work / name)
            table.append({"subject": f"S{s:02d}", "visit": str(v + 1), "xray": name,
                          "brightness": f"{images[index].mean():.1f}",
                          "finding": "pneumonia" if label else "normal"})  # fmt: skip
    return write_rows(work / "visits.csv", table)


@pytest.fixture(scope="module")
def image_run(visits_with_images: Path, pneumonia_run: Path) -> Path:
    """The table imported twice (with the images embedded, and without), planned; the embedded one trained."""
    work = visits_with_images.parent
    encoder = pneumonia_run / "run"
    args = ["-q", "import", "table", str(visits_with_images), *IMPORT]
    assert main([*args, "--images", "xray", "--encoder", str(encoder), "--out", str(work / "ds")]) == 0
    assert main([*args, "--out", str(work / "ds_tabular")]) == 0
    for ds in ("ds", "ds_tabular"):
        assert main(["-q", "plan", str(work / ds)]) == 0
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), *QUICK]) == 0
    return work


def test_the_embedding_joins_each_visits_features(image_run: Path, pneumonia_run: Path) -> None:
    import yaml

    from medlens.models.image_encoder import load_encoder

    encoder = load_encoder(pneumonia_run / "run")
    plan = yaml.safe_load((image_run / "ds" / "plan.yaml").read_text())
    tabular = yaml.safe_load((image_run / "ds_tabular" / "plan.yaml").read_text())
    # the encoded visit is wider by exactly the encoder's embedding size (its final linear layer's inputs)
    assert encoder.dim >= 8
    assert plan["data"]["input_size"][1] - tabular["data"]["input_size"][1] == encoder.dim
    assert plan["sequence"]["images"][0]["digest"] == encoder.digest
    # without --images the column of image paths is detected and left out, saying so
    excluded = json.loads((image_run / "ds_tabular" / "fingerprint.json").read_text())["sequence"]["excluded"]
    assert "holds image paths" in excluded["xray"]
    # the embeddings are computed once and kept in the dataset's visits.csv: they are the encoder's
    visits = rows(image_run / "ds" / "visits.csv")
    names = [f"xray:e{k:03d}" for k in range(encoder.dim)]
    kept = np.array([[float(v[n]) for n in names] for v in visits[:4]])
    again = encoder.embed([Path(v["xray"]) for v in visits[:4]])
    np.testing.assert_allclose(kept, again, rtol=1e-4, atol=1e-5)
    assert np.ptp(kept, axis=0).max() > 0  # different images, different embeddings


def test_predictions_follow_the_images_and_the_baselines_read_them(image_run: Path, visits_with_images: Path) -> None:
    from medlens.tasks import load_bundle

    bundle = load_bundle(image_run / "run")
    original = {p.subject: p.probability for p in bundle.predict_many([visits_with_images])}  # type: ignore[attr-defined]
    # embeddings computed at prediction from the raw table equal the ones cached at import
    from medlens.data.dataset import load_dataset
    from medlens.tasks.sequence.table import dataset_visits

    cached = {p.subject: p.probability for p in bundle.predict_many([dataset_visits(load_dataset(image_run / "ds"))])}  # type: ignore[attr-defined]
    assert all(abs(cached[s] - original[s]) < 1e-4 for s in original)
    # the same table with every visit's image swapped for another subject's: other probabilities
    table = rows(visits_with_images)
    shuffled = [r["xray"] for r in table][::-1]
    swapped = write_rows(image_run / "swapped.csv", [r | {"xray": x} for r, x in zip(table, shuffled, strict=True)])
    changed = {p.subject: p.probability for p in bundle.predict_many([swapped])}  # type: ignore[attr-defined]
    assert max(abs(changed[s] - original[s]) for s in original) > 1e-3
    # evaluation: the model and both baselines (on the last visit, embeddings included) with intervals
    assert main(["-q", "evaluate", str(image_run / "run"), "--out", str(image_run / "eval"), "--bootstrap", "50"]) == 0
    metrics = json.loads((image_run / "eval" / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"logistic_regression", "gradient_boosting"}
    assert "ci95" in metrics["auc"] and metrics["image_embeddings"][0]["dim"] == bundle.plan.sequence.images[0].dim  # type: ignore[attr-defined]
    # the baselines read the last visit as the model reads visits: embeddings included
    from medlens.tasks.sequence.table import encode_subjects, last_visits

    x, mask, _ = encode_subjects(dataset_visits(load_dataset(image_run / "ds")), bundle.plan.sequence)  # type: ignore[attr-defined]
    assert last_visits(x, mask).shape[1] == bundle.plan.data.input_size[1]


def test_a_dataset_without_the_models_embeddings_is_refused_by_evaluate(image_run: Path) -> None:
    from medlens.core.errors import InputError
    from medlens.workflows.evaluation import evaluate

    with pytest.raises(InputError, match=r"image column 'xray' not embedded.*--images xray --encoder"):
        evaluate(image_run / "run", image_run / "refused", dataset=image_run / "ds_tabular", n_bootstrap=0)
    assert not (image_run / "refused").exists()


def test_an_encoder_whose_weights_changed_is_refused(image_run: Path) -> None:
    from medlens.core.errors import InputError
    from medlens.tasks import load_bundle
    from medlens.tasks.sequence.prediction import frozen_encoder

    image = load_bundle(image_run / "run").plan.sequence.images[0]  # type: ignore[attr-defined]
    assert frozen_encoder(image).digest == image.digest
    with pytest.raises(InputError, match="weights changed"):
        frozen_encoder(image.model_copy(update={"digest": "0" * 64}))


def test_a_pretrain_folder_is_an_encoder_too(visits_with_images: Path, tmp_path: Path) -> None:
    """``medlens pretrain`` on the table's own images (1 epoch): its encoder embeds every visit at import."""
    from medlens.core.errors import InputError
    from medlens.data.importers.visits import import_visits
    from medlens.models.image_encoder import load_encoder

    images = visits_with_images.parent / "images"
    assert (
        main(["-q", "pretrain", str(images), "--out", str(tmp_path / "pre"), "--epochs", "1", "--batch-size", "16"])
        == 0
    )
    encoder = load_encoder(tmp_path / "pre")
    assert encoder.kind == "pretrain" and encoder.dim == yaml_of(tmp_path / "pre")["backbone"]["embedding_size"]
    dataset = import_visits(visits_with_images, tmp_path / "ds", subject_column="subject", order_column="visit",
                            target_column="finding", images=["xray"], encoder=tmp_path / "pre")  # fmt: skip
    features = json.loads(dataset.spec.source["features"])
    assert [f for f in features if f.startswith("xray:")] == [f"xray:e{k:03d}" for k in range(encoder.dim)]
    with pytest.raises(InputError, match="does not name its network"):
        load_encoder(tmp_path / "pre" / "encoder.safetensors")


def yaml_of(folder: Path) -> dict:  # type: ignore[type-arg]
    import yaml

    return yaml.safe_load((folder / "pretrain.yaml").read_text())


def test_a_missing_image_is_named_and_nothing_is_written(
    visits_with_images: Path, pneumonia_run: Path, tmp_path: Path
) -> None:
    # the importer itself (the CLI prints its InputError as one line, as for every importer)
    from medlens.core.errors import ConfigError, InputError
    from medlens.data.importers.visits import import_visits

    table = rows(visits_with_images)
    table[5]["xray"] = "images/nowhere.png"
    broken = write_rows(visits_with_images.parent / "broken.csv", table)
    columns = {"subject_column": "subject", "order_column": "visit", "target_column": "finding", "images": ["xray"]}
    with pytest.raises(InputError) as error:
        import_visits(broken, tmp_path / "ds", **columns, encoder=pneumonia_run / "run")  # type: ignore[arg-type]
    message = str(error.value)
    assert message.startswith(str(visits_with_images.parent / "images" / "nowhere.png"))
    assert "image not found (line 7 of broken.csv, column 'xray')" in message and "\n" not in message
    assert not (tmp_path / "ds").exists()
    # an empty cell names its line; --images without an encoder says what to give
    table[5]["xray"] = ""
    write_rows(broken, table)
    with pytest.raises(InputError, match="line 7: no image in column 'xray'"):
        import_visits(broken, tmp_path / "ds", **columns, encoder=pneumonia_run / "run")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--encoder"):
        import_visits(broken, tmp_path / "ds", **columns)  # type: ignore[arg-type]
    assert not (tmp_path / "ds").exists()


def test_a_model_without_one_output_per_image_is_no_encoder(hippo_run: Path) -> None:
    """A segmentation run has no image-level head whose inputs would be the image's features."""
    from medlens.core.errors import InputError
    from medlens.models.image_encoder import load_encoder

    with pytest.raises(InputError, match="a segmentation model is no image encoder") as info:
        load_encoder(hippo_run / "run")
    assert str(hippo_run / "run") in str(info.value)


def test_a_bundle_carries_its_image_encoder_to_another_machine(
    image_run: Path, visits_with_images: Path, tmp_path: Path
) -> None:
    """The bundle holds a copy of the encoder: moved where the encoder's original folder does not exist (the plan's
    path made to point nowhere), it predicts the same."""
    import shutil

    import yaml

    from medlens.tasks import load_bundle

    original = load_bundle(image_run / "run")
    assert (original.root / "encoders" / "xray" / "bundle.yaml").is_file()
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(original.root, moved)
    spec = yaml.safe_load((moved / "bundle.yaml").read_text())
    spec["plan"]["sequence"]["images"][0]["encoder"] = str(tmp_path / "no-such-run")
    (moved / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    expected = {p.subject: p.probability for p in original.predict_many([visits_with_images])}  # type: ignore[attr-defined]
    got = {p.subject: p.probability for p in load_bundle(moved).predict_many([visits_with_images])}  # type: ignore[attr-defined]
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 1e-6 for k in got)


def test_a_bundle_copy_cannot_be_named_outside_the_bundle(tmp_path: Path) -> None:
    from medlens.models.bundle import _copy_into

    source = tmp_path / "encoder"
    source.mkdir()
    (source / "w.txt").write_text("w")
    for name in ("../escaped", str(tmp_path / "absolute")):
        with pytest.raises(ValueError, match="inside the bundle"):
            _copy_into(tmp_path / "bundle", name, source)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "absolute").exists()
    _copy_into(tmp_path / "bundle", "encoders/x", source)
    (source / "w.txt").write_text("again")
    _copy_into(tmp_path / "bundle", "encoders/x", source)  # a resumed run saves again: its own copy is replaced
    assert (tmp_path / "bundle" / "encoders" / "x" / "w.txt").read_text() == "again"
    assert sorted(p.name for p in (tmp_path / "bundle" / "encoders").iterdir()) == ["x"]  # nothing left beside it
