"""Paths in a dataset stay inside its folder or a folder its dataset.yaml lists under ``image_roots``.

A dataset folder can arrive from elsewhere (another site, a colleague, a download); its manifest must not make
medlens read files outside the places the dataset was imported from. The datasets here are written by hand,
as a received one would be, so that what ``load_dataset`` accepts does not depend on how an importer wrote it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from medlens.core.errors import InputError
from medlens.data.dataset import Case, DatasetSpec, load_dataset, write_dataset


def _received(
    root: Path,
    rows: list[tuple[str, str, str]],
    *,
    task: str = "classification",
    image_roots: list[str] | None = None,
) -> Path:
    """Write ``dataset.yaml`` and ``manifest.csv`` directly; ``rows`` are (case_id, image, target)."""
    root.mkdir(parents=True, exist_ok=True)
    spec: dict[str, object] = {"name": "received", "task": task, "spatial_dims": 2, "classes": ["a", "b"]}
    if image_roots is not None:
        spec["image_roots"] = image_roots
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec))
    lines = ["case_id,patient_id,image,target,split"] + [f"{c},{c},{img},{t},train" for c, img, t in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _refused(root: Path, case_id: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_dataset(root)
    assert info.value.path == root / "manifest.csv"
    assert f"case {case_id}" in info.value.problem and "outside" in info.value.problem
    return info.value


@pytest.mark.parametrize(
    "image",
    ["../outside.png", "images/../../outside.png", "images/sub/../../../outside.png", "/etc/passwd", "OUTSIDE_ABS"],
)
def test_image_path_leaving_the_dataset_folder_is_refused(tmp_path: Path, image: str) -> None:
    (tmp_path / "outside.png").write_bytes(b"not read")
    image = str(tmp_path / "outside.png") if image == "OUTSIDE_ABS" else image
    ds = _received(tmp_path / "ds", [("fine", "images/a.png", "0"), ("evil", image, "1")])
    _refused(ds, "evil")


def test_second_channel_is_checked_too(tmp_path: Path) -> None:
    ds = _received(tmp_path / "ds", [("two", "images/t1.png;../t2.png", "0")])
    _refused(ds, "two")


@pytest.mark.parametrize(("task", "target"), [("segmentation", "../masks/x.png"), ("detection", "/etc/hosts")])
def test_target_path_leaving_the_dataset_folder_is_refused(tmp_path: Path, task: str, target: str) -> None:
    ds = _received(
        tmp_path / "ds", [("ok", "images/a.png", "masks/a.png"), ("evil", "images/b.png", target)], task=task
    )
    _refused(ds, "evil")


def test_paths_inside_are_kept_and_normalised(tmp_path: Path) -> None:
    """``..`` is resolved in the path string, so the path that is checked is the path that is read."""
    root = tmp_path / "ds"
    inside_abs = str(root / "images" / "c.png")
    ds = _received(
        root,
        [("a", "images/a.png", "0"), ("b", "images/sub/../b.png", "1"), ("c", inside_abs, "0"), ("d", "./d.png", "1")],
    )
    loaded = load_dataset(ds)
    assert [loaded.image_paths(c)[0] for c in loaded.cases] == [
        root / "images" / "a.png",
        root / "images" / "b.png",
        root / "images" / "c.png",
        root / "d.png",
    ]
    assert loaded.cases[1].image == [os.path.join("images", "b.png")]


def test_segmentation_target_is_normalised(tmp_path: Path) -> None:
    ds = _received(tmp_path / "ds", [("a", "images/a.png", "masks/x/../a.png")], task="segmentation")
    case = load_dataset(ds).cases[0]
    assert case.target == os.path.join("masks", "a.png")


def test_classification_targets_are_not_paths(tmp_path: Path) -> None:
    ds = _received(tmp_path / "ds", [("a", "a.png", "0"), ("b", "b.png", "1")])
    assert [c.target for c in load_dataset(ds).cases] == ["0", "1"]


def test_image_roots_admit_their_folders_only(tmp_path: Path) -> None:
    images = tmp_path / "pictures"
    sibling = tmp_path / "pictures_private"  # shares the prefix of the listed folder, but is another folder
    listed = [("a", str(images / "a.png"), "0"), ("b", str(images / "deeper" / "b.png"), "1")]
    ds = _received(tmp_path / "ds", listed, image_roots=[str(images)])
    assert load_dataset(ds).image_paths(load_dataset(ds).cases[1]) == [images / "deeper" / "b.png"]
    ds2 = _received(tmp_path / "ds2", [*listed, ("c", str(sibling / "c.png"), "0")], image_roots=[str(images)])
    _refused(ds2, "c")
    ds3 = _received(
        tmp_path / "ds3", [*listed, ("d", str(images / ".." / "secret.png"), "0")], image_roots=[str(images)]
    )
    _refused(ds3, "d")


def test_relative_image_root_is_relative_to_the_dataset_folder(tmp_path: Path) -> None:
    ds = _received(tmp_path / "ds", [("a", "../shared/a.png", "0")], image_roots=["../shared"])
    assert load_dataset(ds).image_paths(load_dataset(ds).cases[0]) == [tmp_path / "shared" / "a.png"]


def test_old_dataset_without_image_roots(tmp_path: Path) -> None:
    """Datasets written before ``image_roots`` existed load when their paths are inside their folder; absolute
    paths outside are refused with a message that says how to accept them."""
    inside = _received(tmp_path / "old_inside", [("a", "images/a.png", "0")])
    assert "image_roots" not in yaml.safe_load((inside / "dataset.yaml").read_text())
    assert load_dataset(inside).cases[0].image == ["images/a.png"]
    pictures = tmp_path / "pictures"
    outside = _received(tmp_path / "old_outside", [("a", str(pictures / "a.png"), "0")])
    error = _refused(outside, "a")
    assert "image_roots" in error.problem and "re-import" in error.problem
    spec = yaml.safe_load((outside / "dataset.yaml").read_text())
    spec["image_roots"] = [str(pictures)]  # what the message tells the owner to do
    (outside / "dataset.yaml").write_text(yaml.safe_dump(spec))
    assert load_dataset(outside).image_paths(load_dataset(outside).cases[0]) == [pictures / "a.png"]


def test_symlinked_file_inside_the_folder_is_read_through_its_link(data_root: Path, tmp_path: Path) -> None:
    """Decision: paths are checked as written (lexically), symbolic links are not followed. A link inside the
    dataset folder was put there by whoever owns the folder; it is how tests link real data without copying."""
    from medlens.io import read_image

    real = sorted((data_root / "BCCD" / "JPEGImages").glob("*.jpg"))[0]
    ds = _received(tmp_path / "ds", [("linked", "images/linked.jpg", "0")])
    (ds / "images").mkdir()
    (ds / "images" / "linked.jpg").symlink_to(real)
    loaded = load_dataset(ds)
    path = loaded.image_paths(loaded.cases[0])[0]
    assert path == ds / "images" / "linked.jpg"
    assert read_image(path).spatial_shape == (480, 640)


def test_write_dataset_refuses_outside_paths_and_writes_nothing(tmp_path: Path) -> None:
    spec = DatasetSpec(name="toy", task="classification", spatial_dims=2, classes=["a", "b"])
    cases = [Case("a", "p", ["images/a.png"], "0"), Case("b", "q", ["/etc/passwd"], "1")]
    with pytest.raises(InputError, match="case b"):
        write_dataset(tmp_path / "ds", spec, cases)
    assert not (tmp_path / "ds").exists() or list((tmp_path / "ds").iterdir()) == []
    listed = spec.model_copy(update={"image_roots": ["/etc"]})
    assert write_dataset(tmp_path / "ds", listed, cases).spec.image_roots == ["/etc"]
    assert load_dataset(tmp_path / "ds").image_paths(load_dataset(tmp_path / "ds").cases[1]) == [Path("/etc/passwd")]


@pytest.mark.parametrize("manifest", ["../elsewhere.csv", "/etc/passwd", "."])
def test_manifest_outside_the_dataset_folder_is_refused(tmp_path: Path, manifest: str) -> None:
    ds = _received(tmp_path / "ds", [("a", "images/a.png", "0")])
    (tmp_path / "elsewhere.csv").write_text((ds / "manifest.csv").read_text())
    spec = yaml.safe_load((ds / "dataset.yaml").read_text())
    (ds / "dataset.yaml").write_text(yaml.safe_dump(dict(spec, manifest=manifest)))
    with pytest.raises(InputError, match="inside the dataset folder") as info:
        load_dataset(ds)
    assert info.value.path == ds / "dataset.yaml"
