"""The real data the corpus is made from (``MEDLENS_DATA``), and writers of good inputs the mutations start from."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.corpus.registry import MARKER

# ---- the real data --------------------------------------------------------------------------------------------


class Sources:
    """Small pieces of the real data, read once (bytes and arrays; never written back)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def ct_small(self) -> bytes:
        """pydicom's CT_small.dcm: a 128x128 CT slice with full geometry, explicit VR little endian."""
        return (self.root / "dicom" / "pydicom_testdata" / "CT_small.dcm").read_bytes()

    @cached_property
    def series(self) -> list[bytes]:
        """Five consecutive slices of the real sagittal MR series, cropped to their central 64x64 pixels (the
        positions moved with the crop, so the geometry is still the real one)."""
        import pydicom

        files = sorted((self.root / "dicom" / "sag_anon_mr_t1_series").glob("*.dcm"))[95:100]
        out = []
        for path in files:
            ds = pydicom.dcmread(path)
            r0 = c0 = 96
            n = 64
            pixels = ds.pixel_array[r0 : r0 + n, c0 : c0 + n]
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
            ipp = ipp + iop[:3] * c0 * col_spacing + iop[3:] * r0 * row_spacing
            ds.PixelData = np.ascontiguousarray(pixels).tobytes()
            ds.Rows = ds.Columns = n
            ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
            buffer = io.BytesIO()
            ds.save_as(buffer)
            out.append(buffer.getvalue())
        return out

    @cached_property
    def hippocampus(self) -> list[tuple[str, bytes, bytes]]:
        """(case id, image .nii.gz bytes, label .nii.gz bytes) of the first six Hippocampus training cases."""
        folder = self.root / "Task04_Hippocampus"
        spec = json.loads((folder / "dataset.json").read_text())
        out = []
        for entry in spec["training"][:6]:
            image, label = folder / entry["image"], folder / entry["label"]
            out.append((image.name.removesuffix(".nii.gz"), image.read_bytes(), label.read_bytes()))
        return out

    @cached_property
    def pneumonia(self) -> dict[str, np.ndarray]:
        """24/8/8 real PneumoniaMNIST images and labels (the first of each split)."""
        counts = {"train": 24, "val": 8, "test": 8}
        with np.load(self.root / "medmnist" / "pneumoniamnist.npz") as data:
            return {
                f"{s}_{k}": np.ascontiguousarray(data[f"{s}_{k}"][:n])
                for s, n in counts.items()
                for k in ("images", "labels")
            }

    @cached_property
    def _xrays(self) -> np.ndarray:
        return np.concatenate([self.pneumonia["test_images"], self.pneumonia["val_images"]])

    def xray(self, index: int) -> np.ndarray:
        """One of 16 real 28x28 chest X-rays (uint8), from the test and val splits."""
        return self._xrays[index % len(self._xrays)]

    @cached_property
    def bccd(self) -> list[tuple[str, bytes, str]]:
        """(stem, JPEG bytes, VOC XML text) of the first six BCCD images."""
        folder = self.root / "BCCD"
        out = []
        for xml in sorted((folder / "Annotations").glob("*.xml"))[:6]:
            out.append((xml.stem, (folder / "JPEGImages" / f"{xml.stem}.jpg").read_bytes(), xml.read_text()))
        return out


# ---- small writers of good inputs, shared by the mutations and the commands --------------------------------------


def png_bytes(array: np.ndarray, **options: Any) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def write_xrays(folder: Path, src: Sources, indices: range, prefix: str = "xray") -> list[Path]:
    """Real X-rays as PNGs ``{prefix}_{i}.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        path = folder / f"{prefix}_{i:02d}.png"
        path.write_bytes(png_bytes(src.xray(i)))
        paths.append(path)
    return paths


def write_msd(folder: Path, src: Sources, n: int = 4) -> list[dict[str, str]]:
    """A Decathlon task folder with the first ``n`` Hippocampus cases; returns its training list."""
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    training = []
    for case_id, image, label in src.hippocampus[:n]:
        (folder / "imagesTr" / f"{case_id}.nii.gz").write_bytes(image)
        (folder / "labelsTr" / f"{case_id}.nii.gz").write_bytes(label)
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    write_msd_json(folder, training)
    return training


def write_msd_json(folder: Path, training: list[dict[str, str]], **changes: Any) -> None:
    spec = {
        "name": "Hippocampus",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": len(training),
        "training": training,
    }
    (folder / "dataset.json").write_text(json.dumps(spec | changes))


def voc_folder(folder: Path, src: Sources) -> Path:
    """Six real BCCD images in VOC layout (four train, two val)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for stem, jpeg, xml in src.bccd:
        (folder / "JPEGImages" / f"{stem}.jpg").write_bytes(jpeg)
        (folder / "Annotations" / f"{stem}.xml").write_text(xml)
        stems.append(stem)
    (folder / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (folder / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems[4:]) + "\n")
    return folder


def voc_boxes(src: Sources) -> list[tuple[str, list[tuple[str, list[float]]]]]:
    """(stem, [(class name, [x1, y1, x2, y2])]) of the BCCD images, from their real VOC annotations."""
    import xml.etree.ElementTree as ET

    out = []
    for stem, _, xml in src.bccd:
        root = ET.fromstring(xml)
        objects = []
        for obj in root.iter("object"):
            box = [float(obj.findtext(f"bndbox/{k}") or 0) for k in ("xmin", "ymin", "xmax", "ymax")]
            objects.append(((obj.findtext("name") or "").strip(), box))
        out.append((stem, objects))
    return out


def coco_content(src: Sources) -> dict[str, Any]:
    """The BCCD images' real boxes as a COCO annotations mapping."""
    names = ["Platelets", "RBC", "WBC"]
    images, annotations = [], []
    for i, (stem, objects) in enumerate(voc_boxes(src), start=1):
        images.append({"id": i, "file_name": f"{stem}.jpg", "width": 640, "height": 480})
        for name, (x1, y1, x2, y2) in objects:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "category_id": names.index(name) + 1,
                 "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1], "iscrowd": 0}
            )  # fmt: skip
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_folder(folder: Path, src: Sources, content: dict[str, Any] | None = None) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for stem, jpeg, _ in src.bccd:
        (folder / "images" / f"{stem}.jpg").write_bytes(jpeg)
    (folder / "annotations.json").write_text(json.dumps(content if content is not None else coco_content(src)))
    return folder


def yolo_folder(folder: Path, src: Sources) -> Path:
    """The BCCD images in YOLO layout (``images/train``, ``images/val``, labels, data.yaml)."""
    names = ["Platelets", "RBC", "WBC"]
    for i, ((stem, jpeg, _), (_, objects)) in enumerate(zip(src.bccd, voc_boxes(src), strict=True)):
        split = "train" if i < 4 else "val"
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        (folder / "images" / split / f"{stem}.jpg").write_bytes(jpeg)
        lines = []
        for name, (x1, y1, x2, y2) in objects:
            cx, cy, w, h = (x1 + x2) / 2 / 640, (y1 + y2) / 2 / 480, (x2 - x1) / 640, (y2 - y1) / 480
            lines.append(f"{names.index(name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (folder / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (folder / "data.yaml").write_text("names: [Platelets, RBC, WBC]\n")
    return folder


def table_folder(folder: Path, src: Sources) -> list[str]:
    """Twelve real X-rays under ``images/`` and the rows of a table listing them (six per class)."""
    paths = write_xrays(folder / "images", src, range(12))
    return [f"images/{p.name},{'pneumonia' if i % 2 else 'normal'},p{i:02d}" for i, p in enumerate(paths)]


def class_folder(folder: Path, src: Sources, per_class: int = 5) -> None:
    """``normal/`` and ``pneumonia/`` subfolders of real X-rays."""
    write_xrays(folder / "normal", src, range(per_class), "n")
    write_xrays(folder / "pneumonia", src, range(per_class, 2 * per_class), "p")


def pickle_payload(marker: Path) -> Any:
    """An object whose unpickling creates ``marker`` (the way a malicious file would run code)."""
    return _Payload(str(marker))


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def marker_for(folder: Path) -> Path:
    """Where a pickle payload built for an input under ``folder`` leaves its mark if it is ever unpickled: in the
    case folder, beside ``input/`` (the test checks that it never appears)."""
    for parent in [folder, *folder.parents]:
        if parent.name == "input":
            return parent.parent / MARKER
    raise ValueError(f"{folder} is not inside a case's input folder")


def picture_bytes(array: np.ndarray, fmt: str, mode: str | None = None, **options: Any) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    picture = PILImage.fromarray(array, mode) if mode else PILImage.fromarray(array)
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def checkpoint_with_payload(path: Path, marker: Path) -> None:
    import torch

    torch.save({"state_dict": {}, "epoch": 1, "payload": pickle_payload(marker)}, path)


def edit_text(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text()))
