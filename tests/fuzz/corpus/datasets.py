"""Mutations of dataset folders, of their plan.yaml, and of ``--set`` values."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
    checkpoint_with_payload,
    edit_text,
    marker_for,
    picture_bytes,
)

# ---- dataset folders ----------------------------------------------------------------------------------------------
# ``folder`` is a copy of a good dataset (24/8/8 real PneumoniaMNIST images imported by medlens); each mutation
# edits it the way a hand edit, a script or a received copy could.


def _manifest_rows(folder: Path, change: Callable[[list[str]], list[str]]) -> Built:
    path = folder / "manifest.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *change(lines[1:])]) + "\n")
    return Built(folder, "manifest.csv")


def _first_of(split: str, rows: list[str]) -> int:
    return next(i for i, row in enumerate(rows) if row.endswith(f",{split}"))


_TRAINS_ON_IT = "the dataset is valid for this command"


@mutation("dataset")
def dataset__yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "dataset.yaml").write_text("name: pneumonia\nclasses: [normal, pneumonia\ntask: classification\n")
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__yaml_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "dataset.yaml").write_text("- normal\n- pneumonia\n")
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__yaml_empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "dataset.yaml").write_text("")
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__yaml_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "dataset.yaml"
    path.write_bytes(path.read_bytes().replace(b"pneumoniamnist", b"pneumon\xeda", 1))
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__yaml_unknown_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(folder / "dataset.yaml", lambda text: text + "colour: grey\n")
    return Built(folder, "colour")


@mutation("dataset")
def dataset__yaml_spatial_dims_four(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(folder / "dataset.yaml", lambda text: text.replace("spatial_dims: 2", "spatial_dims: 4"))
    return Built(folder, "spatial_dims")


@mutation("dataset")
def dataset__yaml_unknown_task(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(folder / "dataset.yaml", lambda text: text.replace("task: classification", "task: prognosis"))
    return Built(folder, "prognosis")


@mutation("dataset")
def dataset__yaml_classes_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(folder / "dataset.yaml", lambda text: text.replace("classes:\n- normal\n- pneumonia\n", "classes: 2\n"))
    return Built(folder, "classes")


@mutation("dataset")
def dataset__yaml_python_tag(folder: Path, src: Sources, rng: random.Random) -> Built:
    marker = marker_for(folder)
    edit_text(
        folder / "dataset.yaml", lambda text: text + f'notes: !!python/object/apply:builtins.open ["{marker}", "w"]\n'
    )
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__manifest_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "manifest.csv").unlink()
    return Built(folder, "manifest.csv")


@mutation("dataset")
def dataset__manifest_outside_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(
        folder / "dataset.yaml", lambda text: text.replace("manifest: manifest.csv", "manifest: ../../manifest.csv")
    )
    return Built(folder, "manifest")


@mutation("dataset")
def dataset__manifest_column_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "manifest.csv"
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in path.read_text().splitlines()) + "\n")
    return Built(folder, "manifest.csv")


@mutation("dataset")
def dataset__manifest_row_with_extra_field(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _manifest_rows(folder, lambda rows: [rows[0] + ",extra", *rows[1:]])


@mutation("dataset")
def dataset__manifest_nul_byte(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _manifest_rows(folder, lambda rows: [rows[0].replace("train_", "train\x00", 1), *rows[1:]])


@mutation("dataset")
def dataset__manifest_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "manifest.csv"
    path.write_bytes(path.read_bytes().replace(b"train_00003,", b"train_\xe900003,", 1))
    return Built(folder, "manifest.csv")


@mutation("dataset")
def dataset__manifest_header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _manifest_rows(folder, lambda rows: [])


@mutation("dataset")
def dataset__target_not_an_index(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(rows: list[str]) -> list[str]:
        for split in ("train", "test"):
            i = _first_of(split, rows)
            rows[i] = rows[i].replace(".png,0,", ".png,abnormal,").replace(".png,1,", ".png,abnormal,")
        return rows

    return _manifest_rows(folder, change)


@mutation("dataset")
def dataset__target_out_of_range(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(rows: list[str]) -> list[str]:
        for split in ("train", "test"):
            i = _first_of(split, rows)
            rows[i] = rows[i].replace(".png,0,", ".png,7,").replace(".png,1,", ".png,7,")
        return rows

    return _manifest_rows(folder, change)


@mutation("dataset")
def dataset__target_fractional(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(rows: list[str]) -> list[str]:
        for split in ("train", "test"):
            i = _first_of(split, rows)
            rows[i] = rows[i].replace(".png,0,", ".png,0.5,").replace(".png,1,", ".png,0.5,")
        return rows

    return _manifest_rows(folder, change)


@mutation("dataset")
def dataset__path_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _manifest_rows(folder, lambda rows: [rows[0].replace("images/", "../../../../etc/", 1), *rows[1:]])


@mutation("dataset")
def dataset__absolute_path_elsewhere(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(rows: list[str]) -> list[str]:
        i = _first_of("test", rows)
        case_id = rows[i].split(",")[0]
        rows[i] = rows[i].replace(f"images/{case_id}.png", "/etc/hostname")
        return rows

    return _manifest_rows(folder, change)


@mutation("dataset")
def dataset__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "images" / "train_00004.png").unlink()
    (folder / "images" / "test_00004.png").unlink()
    return Built(folder, "_00004.png")


@mutation("dataset")
def dataset__image_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    for name in ("train_00005.png", "test_00005.png"):
        path = folder / "images" / name
        path.write_bytes(path.read_bytes()[:40])
    return Built(folder, "_00005.png")


@mutation("dataset")
def dataset__image_with_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    values = src.xray(6).astype(np.float32)
    values[4:8, 4:8] = np.nan
    for split in ("train", "val", "test"):  # every case numbered 6 (7) in its split
        (folder / "images" / f"{split}_00006.png").unlink()
        (folder / "images" / f"{split}_00006.tif").write_bytes(picture_bytes(values, "TIFF"))
    edit_text(folder / "manifest.csv", lambda text: text.replace("_00006.png", "_00006.tif"))
    return Built(folder, "_00006.tif")


@mutation("dataset")
def dataset__image_of_another_dimension(folder: Path, src: Sources, rng: random.Random) -> Built:
    for split in ("train", "val", "test"):  # every case numbered 6 (7) in its split
        (folder / "images" / f"{split}_00007.png").unlink()
        (folder / "images" / f"{split}_00007.nii.gz").write_bytes(src.hippocampus[0][1])
    edit_text(folder / "manifest.csv", lambda text: text.replace("_00007.png", "_00007.nii.gz"))
    return Built(folder, "_00007.nii.gz")


@mutation("dataset")
def dataset__duplicate_case_id(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _manifest_rows(folder, lambda rows: [*rows, rows[0]])


@mutation(
    "dataset",
    valid={"evaluate": "evaluation needs only the test split"},
    errors={"train": "training needs a train split"},
)
def dataset__no_train_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _manifest_rows(folder, lambda rows: [r.replace(",train", ",test") for r in rows])
    return Built(built.path, "train split")


@mutation("dataset", commands=("evaluate",))
def dataset__no_test_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    _manifest_rows(folder, lambda rows: [r.replace(",test", ",val") for r in rows])
    return Built(folder, "split 'test'")


@mutation("dataset", commands=("evaluate",))
def dataset__other_classes(folder: Path, src: Sources, rng: random.Random) -> Built:
    edit_text(folder / "dataset.yaml", lambda text: text.replace("- pneumonia\n", "- pneumonia\n- covid\n"))
    return Built(folder)


@mutation("dataset")
def dataset__unknown_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    _manifest_rows(
        folder, lambda rows: [r.replace(",train", ",holdout", 5) if i < 5 else r for i, r in enumerate(rows)]
    )
    return Built(folder, "holdout")


# ---- plans (plan.yaml in a dataset folder) ------------------------------------------------------------------------
# ``folder`` is a copy of the good dataset holding the plan ``medlens plan`` wrote for it; training reads it.


def _plan(folder: Path, change: Callable[[dict[str, Any]], Any], names: str) -> Built:
    import yaml

    path = folder / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    change(plan)
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return Built(folder, names)


def _plan_text(folder: Path, text: str | bytes) -> Built:
    path = folder / "plan.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return Built(folder, "plan.yaml")


@mutation("plan")
def plan__not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan_text(folder, "data: {input_size: [28, 28]\ntrain:\n  batch_size: [\n")


@mutation("plan")
def plan__a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan_text(folder, "- data\n- train\n")


@mutation("plan")
def plan__empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan_text(folder, "")


@mutation("plan")
def plan__not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan_text(folder, (folder / "plan.yaml").read_bytes().replace(b"# medlens plan", b"# medlens plan \xe9", 1))


@mutation("plan")
def plan__python_tag(folder: Path, src: Sources, rng: random.Random) -> Built:
    text = (folder / "plan.yaml").read_text()
    return _plan_text(folder, text + f'extra: !!python/object/apply:builtins.open ["{marker_for(folder)}", "w"]\n')


@mutation("plan")
def plan__unknown_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["train"].update(bach_size=8), "bach_size")


@mutation("plan")
def plan__batch_size_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["train"].update(batch_size=0), "train.batch_size")


@mutation("plan")
def plan__learning_rate_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["optim"].update(lr=math.nan), "optim.lr")


@mutation("plan")
def plan__learning_rate_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["optim"].update(lr=math.inf), "optim.lr")


@mutation("plan")
def plan__version_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p.update(version="two"), "version")


@mutation("plan")
def plan__task_of_another_kind(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p.update(task="segmentation"), "segmentation")


@mutation("plan")
def plan__unknown_task(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p.update(task="prognosis"), "prognosis")


@mutation("plan")
def plan__other_class_names(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p.update(class_names=["cat", "dog"]), "plan")


@mutation("plan")
def plan__input_size_three_axes(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["data"].update(input_size=[28, 28, 28]), "input_size")


@mutation("plan")
def plan__flip_axis_out_of_range(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["augment"].update(flip_axes=[5]), "flip_axes")


@mutation("plan")
def plan__unknown_model(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["model"].update(name="resnet9000"), "model.name")


@mutation("plan")
def plan__unknown_model_argument(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["model"].update(kwargs={"depth_multiplier": 3}), "model.kwargs")


@mutation("plan")
def plan__pretrained_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _plan(folder, lambda p: p["model"].update(pretrained=str(folder / "weights.pt")), "weights.pt")


@mutation("plan")
def plan__pretrained_not_a_checkpoint(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "weights.pt").write_text("these are not weights\n")
    return _plan(folder, lambda p: p["model"].update(pretrained=str(folder / "weights.pt")), "weights.pt")


@mutation("plan")
def plan__pretrained_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    checkpoint_with_payload(folder / "weights.pt", marker_for(folder))
    return _plan(folder, lambda p: p["model"].update(pretrained=str(folder / "weights.pt")), "weights.pt")


# ---- --set values -------------------------------------------------------------------------------------------------
# ``folder`` is a copy of the good dataset; the values are given to ``medlens plan`` and ``medlens train``.


def _set(folder: Path, *values: str, names: str = "") -> Built:
    return Built(folder, names or values[0].split("=")[0], args=[a for v in values for a in ("--set", v)])


@mutation("set")
def set__batch_size_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.batch_size=0")


@mutation("set")
def set__learning_rate_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "optim.lr=.nan")


@mutation("set")
def set__learning_rate_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "optim.lr=.inf")


@mutation("set")
def set__learning_rate_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "optim.lr=fast")


@mutation("set")
def set__unknown_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.bach_size=8")


@mutation("set")
def set__unknown_section(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "trian.batch_size=8")


@mutation("set")
def set__no_equals_sign(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.batch_size")


@mutation("set")
def set__empty_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    return Built(folder, "=3", args=["--set", "=3"])


@mutation("set")
def set__empty_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.batch_size=")


@mutation("set")
def set__unclosed_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "data.input_size=[28, 28")


@mutation("set")
def set__sub_key_of_a_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.batch_size.x=1")


@mutation("set")
def set__input_size_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "data.input_size=[0, 0]", names="input_size")


@mutation("set")
def set__input_size_one_axis(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "data.input_size=[28]")


@mutation("set")
def set__scale_inverted(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "augment.scale=[2, 1]", names="scale")


@mutation("set")
def set__workers_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.num_workers=-1")


@mutation("set")
def set__precision_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.precision=64")


@mutation(
    "set", valid={"plan": "the plan records the network's name ('medlens models' lists them); training builds it"}
)
def set__unknown_model(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "model.name=resnet9000")


@mutation(
    "set",
    valid={"plan": "the plan records free-form network arguments; the network is built when training starts"},
)
def set__unknown_model_argument(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "model.kwargs.depth_multiplier=3", names="model.kwargs")


@mutation(
    "set",
    valid={"plan": "the plan records the network's width; the network is built when training starts"},
)
def set__negative_width(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "model.kwargs.widen_factor=-1", names="model.kwargs")


@mutation("set", valid={"plan": "the plan records the monitor's name; only training knows which figures it logs"})
def set__unknown_monitor(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, "train.monitor=val_nothing", names="val_nothing")


@mutation("set", valid={"plan": "the plan records the checkpoint's path; it is read when training starts"})
def set__pretrained_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _set(folder, f"model.pretrained={folder / 'weights.pt'}", names="weights.pt")


@mutation("set", valid={"plan": "the plan records the checkpoint's path; it is read when training starts"})
def set__pretrained_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    checkpoint_with_payload(folder.parent / "weights.pt", marker_for(folder))
    return _set(folder, f"model.pretrained={folder.parent / 'weights.pt'}", names="weights.pt")
