"""Small real inputs for every importer, as a user would hand them to ``medlens import KIND``.

``importer_for(kind, work, request)`` builds them under ``work/src`` (from the shared real data) and says how to
call the importer; the CLI tests of outputs and flags use it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

IMPORTERS = ["medmnist", "folder", "csv", "voc", "coco", "yolo", "msd", "pairs", "visits"]


@dataclass
class Importer:
    """How to call one importer: ``import KIND *inputs --out OUT *options``; ``guarded`` are the input paths."""

    kind: str
    inputs: list[Path]
    options: list[str]

    def args(self, out: Path, *extra: str, out_flag: str = "--out") -> list[str]:
        return ["-q", "import", self.kind, *map(str, self.inputs), out_flag, str(out), *self.options, *extra]


def pictures_by_class(work: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """12 real PneumoniaMNIST pictures in class subfolders."""
    arrays = medmnist_subset("pneumoniamnist", 40, 1, 1)
    folder = work / "pictures"
    for name in ("normal", "pneumonia"):
        (folder / name).mkdir(parents=True)
    labels = arrays["train_labels"].reshape(-1)
    for k in (0, 1):
        for i in np.flatnonzero(labels == k)[:6]:
            PILImage.fromarray(arrays["train_images"][i]).save(folder / ("normal", "pneumonia")[k] / f"{i}.png")
    return folder


def importer_for(kind: str, work: Path, request: pytest.FixtureRequest) -> Importer:
    if kind == "visits":  # 'import table --task sequence': the visits of 30 OASIS-2 subjects
        lines = request.getfixturevalue("real_data")("oasis2/oasis_longitudinal.csv").read_text().splitlines()
        subjects = sorted({line.split(",")[0] for line in lines[1:]})[:30]
        table = work / "src" / "visits.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.split(",")[0] in subjects)]) + "\n")
        options = ["--task", "sequence", "--subject", "Subject ID", "--order", "Visit", "--target", "Group"]
        return Importer("table", [table], options)
    subset = request.getfixturevalue("medmnist_subset")
    if kind == "medmnist":
        npz = work / "src" / "pneumoniamnist.npz"
        request.getfixturevalue("write_npz")(npz, subset("pneumoniamnist", 20, 10, 10))
        return Importer(kind, [npz], [])
    if kind in ("folder", "csv"):
        pictures = pictures_by_class(work / "src", subset)
        if kind == "folder":
            return Importer(kind, [pictures], [])
        table = pictures / "labels.csv"
        rows = [f"{p.relative_to(pictures)},{p.parent.name}" for p in sorted(pictures.rglob("*.png"))]
        table.write_text("image,label\n" + "\n".join(rows) + "\n")
        return Importer(kind, [table], [])
    if kind in ("voc", "coco", "yolo"):
        from suite_support import build_voc

        voc = build_voc(request.getfixturevalue("bccd_root"), work / "src" / "voc", 3, 2)
        if kind == "voc":
            return Importer(kind, [voc], [])
        from medlens.data.boxes import read_boxes
        from medlens.data.importers import get_importer

        dataset = get_importer("voc")(voc, work / "voc_ds")
        if kind == "coco":
            images, annotations = [], []
            for i, case in enumerate(dataset.cases, start=1):
                boxes, labels, (h, w) = read_boxes(dataset, case)
                images.append({"id": i, "file_name": Path(case.image[0]).name, "height": h, "width": w})
                for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
                    bbox = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
                    annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1,
                                        "iscrowd": 0, "bbox": bbox})  # fmt: skip
            categories = [{"id": k + 1, "name": n} for k, n in enumerate(dataset.spec.classes)]
            ann = voc / "instances.json"
            ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
            return Importer(kind, [ann, voc / "JPEGImages"], [])
        root = work / "src" / "yolo"
        for case in dataset.cases:
            boxes, labels, (h, w) = read_boxes(dataset, case)
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "labels").mkdir(parents=True, exist_ok=True)
            image = Path(case.image[0])
            shutil.copy(image, root / "images" / image.name)
            centre, extent = (boxes[:, :2] + boxes[:, 2:]) / 2 / [w, h], (boxes[:, 2:] - boxes[:, :2]) / [w, h]
            rows = zip(labels, centre, extent, strict=True)
            lines = [f"{k} {c[0]:.6f} {c[1]:.6f} {e[0]:.6f} {e[1]:.6f}" for k, c, e in rows]
            (root / "labels" / f"{image.stem}.txt").write_text("\n".join(lines) + "\n")
        (root / "data.yaml").write_text(yaml.safe_dump({"names": list(dataset.spec.classes)}))
        return Importer(kind, [root], [])
    from suite_support import build_msd

    msd = build_msd(request.getfixturevalue("hippocampus_root"), work / "src" / "msd", 4)
    if kind == "msd":
        return Importer(kind, [msd], [])
    return Importer("pairs", [msd / "imagesTr", msd / "labelsTr"], [])
