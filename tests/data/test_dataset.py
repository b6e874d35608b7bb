"""The dataset folder: dataset.yaml + manifest.csv written, read back and validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import Case, DatasetSpec, load_dataset, write_dataset


def _spec(**kw) -> DatasetSpec:
    fields = {
        "name": "toy",
        "task": "classification",
        "spatial_dims": 2,
        "modality": "DX",
        "classes": ["normal", "pneumonia"],
    }
    return DatasetSpec(**(fields | kw))


def _cases() -> list[Case]:
    return [
        Case("c0", "p0", ["images/c0.png"], "0", "train"),
        Case("c1", "p0", ["images/c1.png"], "1", "val"),
        Case("c2", "p1", ["images/c2_t1.nii.gz", "images/c2_t2.nii.gz"], "1", "test"),
        Case("c3", "p2", ["images/c3.png"], "0", ""),
    ]


def test_write_load_round_trip(tmp_path: Path) -> None:
    spec = _spec(channels=["t1", "t2"], source={"format": "test"})
    write_dataset(tmp_path, spec, _cases())
    loaded = load_dataset(tmp_path)
    assert loaded.spec == spec
    assert loaded.cases == _cases()
    assert loaded.num_classes == 2
    assert [c.case_id for c in loaded.split("train")] == ["c0"]
    assert [c.case_id for c in loaded.split("test")] == ["c2"]
    assert len(loaded.split("all")) == 4
    assert loaded.image_paths(loaded.cases[2]) == [
        tmp_path / "images/c2_t1.nii.gz",
        tmp_path / "images/c2_t2.nii.gz",
    ]
    assert [loaded.class_index(c) for c in loaded.cases] == [0, 1, 1, 0]
    # no temporary files left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.yaml", "manifest.csv"]


def test_empty_patient_id_falls_back_to_case_id(tmp_path: Path) -> None:
    write_dataset(
        tmp_path, _spec(), [Case("c0", "", ["a.png"], "0", "train"), Case("c1", "p", ["b.png"], "1", "train")]
    )
    assert [c.patient_id for c in load_dataset(tmp_path).cases] == ["c0", "p"]


def test_unknown_split_name_is_config_error(tmp_path: Path) -> None:
    ds = write_dataset(tmp_path, _spec(), _cases())
    with pytest.raises(ConfigError, match="validation"):
        ds.split("validation")


def test_missing_dataset_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"dataset\.yaml") as info:
        load_dataset(tmp_path)
    assert info.value.path == tmp_path


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, _spec(), _cases())
    (tmp_path / "dataset.yaml").write_text("name: [unclosed\ntask: classification\n")
    with pytest.raises(InputError, match="not valid YAML") as info:
        load_dataset(tmp_path)
    assert info.value.path == tmp_path / "dataset.yaml"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    write_dataset(tmp_path, _spec(), _cases())
    raw = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    raw["clases"] = ["a", "b"]
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_dataset(tmp_path)
    assert "clases" in info.value.key and "dataset.yaml" in info.value.key


def test_unknown_task_is_refused_by_the_task_registry(tmp_path: Path) -> None:
    """The data layer knows no task by name; planning looks the task up and names the known ones."""
    from medlens.workflows.planning import make_plan

    write_dataset(tmp_path, _spec(), _cases())
    raw = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    raw["task"] = "survival"
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(raw))
    dataset = load_dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown task 'survival'.*classification") as info:
        make_plan(dataset)
    assert info.value.key == "task"


@pytest.mark.parametrize(("key", "value"), [("spatial_dims", 4), ("classes", None)])
def test_invalid_value_names_the_key(tmp_path: Path, key: str, value: object) -> None:
    write_dataset(tmp_path, _spec(), _cases())
    raw = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    raw[key] = value
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_dataset(tmp_path)
    assert info.value.key.endswith(key)


def test_missing_manifest_and_missing_column(tmp_path: Path) -> None:
    write_dataset(tmp_path, _spec(), _cases())
    manifest = tmp_path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")  # drop the split column
    with pytest.raises(InputError, match="split"):
        load_dataset(tmp_path)
    manifest.unlink()
    with pytest.raises(InputError, match="manifest missing") as info:
        load_dataset(tmp_path)
    assert info.value.path == manifest


def test_empty_manifest(tmp_path: Path) -> None:
    write_dataset(tmp_path, _spec(), [])
    with pytest.raises(InputError, match="no cases"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("target", ["2", "-1", "pneumonia"])
def test_class_index_outside_classes(tmp_path: Path, target: str) -> None:
    write_dataset(tmp_path, _spec(), [Case("bad", "p", ["x.png"], target, "train")])
    ds = load_dataset(tmp_path)
    with pytest.raises(InputError, match="bad") as info:
        ds.class_index(ds.cases[0])
    assert info.value.path == tmp_path / "manifest.csv"


def test_label_vector_length_checked(tmp_path: Path) -> None:
    spec = _spec(task="multilabel", classes=["a", "b", "c"])
    ds = write_dataset(tmp_path, spec, [Case("ok", "p", ["x.png"], "1;0;1"), Case("short", "q", ["y.png"], "1;0")])
    assert ds.label_vector(ds.cases[0]) == [1, 0, 1]
    with pytest.raises(InputError, match="short"):
        ds.label_vector(ds.cases[1])


def test_duplicate_case_ids_rejected_on_write(tmp_path: Path) -> None:
    cases = [*_cases(), Case("c1", "p9", ["images/other.png"], "0", "train")]
    with pytest.raises(InputError, match="c1"):
        write_dataset(tmp_path / "ds", _spec(), cases)
    assert not (tmp_path / "ds" / "dataset.yaml").exists()


def test_duplicate_case_ids_rejected_on_load(tmp_path: Path) -> None:
    write_dataset(tmp_path, _spec(), _cases())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(manifest.read_text() + "c2,p5,images/dup.png,0,train\n")  # an edited manifest
    with pytest.raises(InputError, match="c2"):
        load_dataset(tmp_path)
