"""Mutations of what importers read as a whole: class folders, CSV tables, Decathlon task folders."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
    class_folder,
    png_bytes,
    table_folder,
    write_msd,
    write_msd_json,
    write_xrays,
)

# ---- class folders (import folder) --------------------------------------------------------------------------------
# The folder is built here from real X-rays; the picture kind puts a malformed picture into a good one.


@mutation("class_folder")
def class_folder__one_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    write_xrays(folder / "classes" / "normal", src, range(6))
    return Built(folder / "classes")


@mutation("class_folder")
def class_folder__empty_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    class_folder(folder / "classes", src)
    for path in (folder / "classes" / "pneumonia").iterdir():
        path.unlink()
    return Built(folder / "classes", "pneumonia")


@mutation("class_folder")
def class_folder__text_files_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    for name in ("normal", "pneumonia"):
        (folder / "classes" / name).mkdir(parents=True)
        (folder / "classes" / name / "notes.txt").write_text("reported by the radiologist\n")
    return Built(folder / "classes")


@mutation("class_folder")
def class_folder__not_a_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "classes.png"
    path.write_bytes(png_bytes(src.xray(0)))
    return Built(path)


@mutation("class_folder", valid={"import-folder": "a class with one image imports (the image lands in one split)"})
def class_folder__class_of_one_image(folder: Path, src: Sources, rng: random.Random) -> Built:
    write_xrays(folder / "classes" / "normal", src, range(8))
    write_xrays(folder / "classes" / "pneumonia", src, range(8, 9))
    return Built(folder / "classes")


# ---- CSV tables (import csv) ------------------------------------------------------------------------------------


def _table(folder: Path, src: Sources, text: str | bytes, header: str = "image,label,patient_id") -> Built:
    rows = table_folder(folder, src)
    path = folder / "table.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.format(header=header, rows="\n".join(rows)), encoding="utf-8")
    return Built(path)


@mutation("table")
def table__latin1_encoding(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = table_folder(folder, src)
    text = "image,label,patient_id\n" + "\n".join(rows).replace("pneumonia", "pneumonía") + "\n"
    (folder / "table.csv").write_bytes(text.encode("latin-1"))
    return Built(folder / "table.csv")


@mutation("table")
def table__utf16_encoding(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = table_folder(folder, src)
    (folder / "table.csv").write_bytes(("image,label,patient_id\n" + "\n".join(rows) + "\n").encode("utf-16"))
    return Built(folder / "table.csv")


@mutation("table")
def table__nul_byte(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n{rows}\nimages/xray_00.png,nor\x00mal,p99\n")


@mutation("table")
def table__no_image_column(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n{rows}\n", header="file,label,patient_id")


@mutation("table")
def table__no_label_column(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n{rows}\n", header="image,diagnosis,patient_id")


@mutation("table")
def table__row_with_extra_field(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n{rows}\nimages/xray_01.png,normal,p1,extra\n")


@mutation("table")
def table__unclosed_quote(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, '{header}\n"images/xray_00.png,normal,p00\n{rows}\n')


@mutation("table")
def table__one_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = [r.replace(",pneumonia,", ",normal,") for r in table_folder(folder, src)]
    (folder / "table.csv").write_text("image,label,patient_id\n" + "\n".join(rows) + "\n")
    return Built(folder / "table.csv")


@mutation("table")
def table__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _table(folder, src, "{header}\n{rows}\nimages/not_there.png,normal,p99\n")
    return Built(built.path, "not_there.png")


@mutation("table")
def table__image_is_a_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _table(folder, src, "{header}\n{rows}\nimages,normal,p99\n")
    return Built(built.path, "images")


@mutation("table")
def table__empty_file(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, b"")


@mutation("table")
def table__header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n")


@mutation("table")
def table__unknown_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = table_folder(folder, src)
    text = "image,label,patient_id,split\n" + "\n".join(f"{r},holdout" for r in rows) + "\n"
    (folder / "table.csv").write_text(text)
    return Built(folder / "table.csv")


@mutation("table")
def table__blank_label(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _table(folder, src, "{header}\n{rows}\nimages/xray_03.png,,p98\n")


@mutation("table")
def table__value_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = [r.replace(",normal,", ",12.5,").replace(",pneumonia,", ",n/a,") for r in table_folder(folder, src)]
    (folder / "table.csv").write_text("image,label,patient_id\n" + "\n".join(rows) + "\n")
    return Built(folder / "table.csv", args=["--target-type", "continuous", "--unit", "mL"])


@mutation("table")
def table__value_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = [r.replace(",normal,", ",12.5,").replace(",pneumonia,", ",inf,") for r in table_folder(folder, src)]
    (folder / "table.csv").write_text("image,label,patient_id\n" + "\n".join(rows) + "\n")
    return Built(folder / "table.csv", args=["--target-type", "continuous"])


@mutation("table")
def table__target_type_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _table(folder, src, "{header}\n{rows}\n")
    return Built(built.path, "ordinal", args=["--target-type", "ordinal"])


@mutation("table", valid={"import-csv": "a byte-order mark and CRLF line ends are ordinary in tables from Excel"})
def table__bom_and_crlf(folder: Path, src: Sources, rng: random.Random) -> Built:
    rows = table_folder(folder, src)
    text = "image,label,patient_id\r\n" + "\r\n".join(rows) + "\r\n"
    (folder / "table.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    return Built(folder / "table.csv")


# ---- Decathlon task folders (import msd) ---------------------------------------------------------------------------


def _msd(folder: Path, src: Sources, **changes: Any) -> Built:
    task = folder / "task"
    training = write_msd(task, src)
    if changes:
        write_msd_json(task, training, **changes)
    return Built(task, "dataset.json")


@mutation("msd")
def msd__dataset_json_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _msd(folder, src)
    (built.path / "dataset.json").unlink()
    return Built(built.path)


@mutation("msd")
def msd__dataset_json_not_json(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _msd(folder, src)
    (built.path / "dataset.json").write_text('{"name": "Hippocampus", "labels": {')
    return built


@mutation("msd")
def msd__dataset_json_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _msd(folder, src)
    path = built.path / "dataset.json"
    path.write_bytes(path.read_bytes().replace(b"Hippocampus", b"Hippocampus \xe9t\xe9"))
    return built


@mutation("msd")
def msd__dataset_json_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _msd(folder, src)
    (built.path / "dataset.json").write_text("[1, 2, 3]")
    return built


@mutation("msd")
def msd__labels_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, labels=None)


@mutation("msd")
def msd__labels_with_a_gap(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, labels={"0": "background", "2": "Posterior"})


@mutation("msd")
def msd__label_names_not_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, labels={"0": "background", "1": 1, "2": ["a"]})


@mutation("msd")
def msd__label_regions(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, labels={"background": 0, "hippocampus": [1, 2]})


@mutation("msd")
def msd__modality_not_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, modality="MRI")


@mutation("msd")
def msd__channel_keys_not_indices(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _msd(folder, src, modality={"T1": "MRI"})


def _training_entry(folder: Path, src: Sources, entry: Any) -> Built:
    task = folder / "task"
    training: list[Any] = list(write_msd(task, src))
    training.append(entry)
    write_msd_json(task, training)
    return Built(task, "dataset.json")


@mutation("msd")
def msd__entry_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _training_entry(folder, src, {"image": "../../outside.nii.gz", "label": "./labelsTr/hippocampus_004.nii.gz"})


@mutation("msd")
def msd__entry_absolute_path(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _training_entry(folder, src, {"image": "/etc/hostname", "label": "./labelsTr/x.nii.gz"})


@mutation("msd")
def msd__entry_not_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _training_entry(folder, src, "./imagesTr/hippocampus_004.nii.gz")


@mutation("msd")
def msd__entry_without_label(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _training_entry(folder, src, {"image": "./imagesTr/hippocampus_004.nii.gz"})


@mutation("msd")
def msd__entry_image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _training_entry(folder, src, {"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"})
    return Built(built.path, "gone.nii.gz")


@mutation("msd")
def msd__declared_2d(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _msd(folder, src, tensorImageSize="2D")
    return Built(built.path, "hippocampus_")


@mutation("msd")
def msd__no_training_list_and_no_files(folder: Path, src: Sources, rng: random.Random) -> Built:
    task = folder / "task"
    write_msd(task, src)
    write_msd_json(task, [])
    return Built(task, "_0000.nii.gz")
