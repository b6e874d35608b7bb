"""The fuzz corpus: malformed inputs of every kind medlens reads, made from the real data by named mutations.

Each input kind (a DICOM file, a DICOM series folder, a NIfTI volume, a picture, a MedMNIST archive, a VOC, COCO or
YOLO folder, a CSV table, a dataset folder, a bundle, a plan, a ``--set`` value, a run folder to resume...) has a
list of named mutations. A mutation starts from real files (``MEDLENS_DATA``, see ``../shared/data/README.md``) and
breaks one thing; it writes the result into a folder it is given and returns a :class:`Built` saying what to hand
to the command and what the command's message must name. Everything is deterministic: where a mutation picks
bytes or places, it uses the seeded generator it is given (:func:`rng_for`).

Which commands take which kind is :data:`KIND_COMMANDS`; what each (kind, mutation, command) must end with is
:func:`expectation`: by default a clean error (a non-zero exit and one line ``medlens: error: ...`` naming the
offending file or key), for ``predict`` and ``deid`` (which work through a batch) a reported skip, and for the
inputs that are valid after all (a 16-bit PNG, a box that only needs clipping...) a success, with the reason
written next to the mutation.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import pickle
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

Expect = Literal["error", "skip", "valid", "xfail"]
MARKER = "UNPICKLED"  # what a pickle payload creates (beside the input folder) if anything ever unpickles it


# ---- what a mutation hands back -------------------------------------------------------------------------------


@dataclass
class Built:
    """A malformed input: the path given to the command, what its message must name, extra arguments."""

    path: Path
    names: str = ""  # a file name or key the error (or skip) line must contain; default: path.name
    args: list[str] = field(default_factory=list)  # extra command-line arguments (e.g. ``--set`` values)

    def __post_init__(self) -> None:
        self.names = self.names or self.path.name


@dataclass(frozen=True)
class Mutation:
    """One named way to break an input of one kind.

    Attributes:
        kind: the input kind (a key of :data:`KIND_COMMANDS`).
        name: what is broken, in a few words joined by underscores.
        build: ``build(folder, sources, rng) -> Built`` writes the malformed input into ``folder``.
        valid: command -> why this input is in fact valid for it (the command must succeed).
        errors: command -> why a batch command (predict, deid) fails as a whole instead of skipping the input.
        xfail: command -> why the case still fails (a defect left for a larger change); strict.
        commands: only these commands of the kind take this mutation (default: all of them).
    """

    kind: str
    name: str
    build: Callable[[Path, Sources, random.Random], Built]
    valid: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] | None = None


MUTATIONS: dict[str, dict[str, Mutation]] = {}

# Which commands take each kind (see test_corpus.COMMANDS for what each runs). predict and deid work through a
# batch: the malformed input goes in beside a good one and must be reported as skipped. predict3d gives a 3D model
# the malformed input alone (its network is slow on a CPU), so a skipped input ends as "nothing could be predicted".
KIND_COMMANDS: dict[str, tuple[str, ...]] = {
    "dicom": ("info", "convert", "predict", "deid"),
    "dicom_series": ("info", "convert", "predict3d", "deid"),  # predict3d: the bad input alone (a 3D model is slow)
    "nifti": ("info", "convert", "predict3d", "import-msd", "import-pairs"),
    "nifti_label": ("import-msd", "import-pairs"),
    "picture": ("info", "convert", "predict", "import-folder", "import-csv"),
    "npz": ("import-medmnist", "info"),
    "class_folder": ("import-folder",),
    "table": ("import-csv",),
    "msd": ("import-msd",),
    "voc": ("import-voc",),
    "coco": ("import-coco",),
    "yolo": ("import-yolo",),
    "dataset": ("plan", "train", "evaluate"),
    "plan": ("train",),
    "set": ("plan", "train"),
    "bundle": ("predict-bundle", "evaluate-bundle", "export"),
    "run": ("resume",),
}
SKIPPING_COMMANDS = ("predict", "deid")
# Plan overrides that make training take seconds (one epoch of a quarter-width network).
TINY = ["--set", "train.max_epochs=1", "--set", "train.budget_minutes=null", "--set", "model.kwargs.widen_factor=0.25"]


def mutation(
    kind: str,
    *,
    valid: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    xfail: dict[str, str] | None = None,
    commands: tuple[str, ...] | None = None,
) -> Callable[[Callable[[Path, Sources, random.Random], Built]], Callable[[Path, Sources, random.Random], Built]]:
    """Decorator: register ``fn`` as the mutation named after it (its name without the kind prefix)."""

    def add(fn: Callable[[Path, Sources, random.Random], Built]) -> Callable[[Path, Sources, random.Random], Built]:
        name = fn.__name__.removeprefix(f"{kind}__")
        MUTATIONS.setdefault(kind, {})[name] = Mutation(kind, name, fn, valid or {}, errors or {}, xfail or {}, commands)
        return fn

    return add


def rng_for(kind: str, name: str) -> random.Random:
    """The generator a mutation uses: seeded by its kind and name, so the corpus is the same on every run."""
    return random.Random(zlib.crc32(f"{kind}/{name}".encode()))


def cases() -> list[tuple[str, str, str]]:
    """Every (kind, mutation, command) of the corpus."""
    out = []
    for kind, mutations in MUTATIONS.items():
        for name, mut in mutations.items():
            for command in KIND_COMMANDS[kind]:
                if mut.commands is None or command in mut.commands:
                    out.append((kind, name, command))
    return out


def expectation(kind: str, name: str, command: str) -> tuple[Expect, str]:
    """What the case must end with, and why when it is not an error."""
    mut = MUTATIONS[kind][name]
    if command in mut.xfail:
        return "xfail", mut.xfail[command]
    if command in mut.valid:
        return "valid", mut.valid[command]
    if command in mut.errors:
        return "error", mut.errors[command]
    if command in SKIPPING_COMMANDS:
        return "skip", "a batch command skips the bad input, reports it and goes on"
    return "error", ""


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
        """80/20/20 real PneumoniaMNIST images and labels (the first of each split)."""
        counts = {"train": 80, "val": 20, "test": 20}
        with np.load(self.root / "medmnist" / "pneumoniamnist.npz") as data:
            return {
                f"{s}_{k}": np.ascontiguousarray(data[f"{s}_{k}"][:n]) for s, n in counts.items() for k in ("images", "labels")
            }

    def xray(self, index: int) -> np.ndarray:
        """One real 28x28 chest X-ray (uint8), from the test split."""
        return self.pneumonia["test_images"][index % 20]

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


def write_series(folder: Path, src: Sources) -> list[Path]:
    """The five real cropped MR slices as ``slice_0.dcm``..``slice_4.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, raw in enumerate(src.series):
        path = folder / f"slice_{i}.dcm"
        path.write_bytes(raw)
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


# ---- DICOM files ------------------------------------------------------------------------------------------------


def _dicom(raw: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(raw))


def _dicom_bytes(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _patched(ds: Any, keyword: str, placeholder: Any, replacement: bytes) -> bytes:
    """``ds`` written with ``keyword`` set to a value pydicom refuses to write: written with a placeholder of the
    same length first, whose bytes are then replaced (the way a broken writer's output looks)."""
    setattr(ds, keyword, placeholder)
    raw = _dicom_bytes(ds)
    text = "\\".join(str(v) for v in placeholder) if isinstance(placeholder, list) else str(placeholder)
    old = text.encode()
    if len(old) % 2:
        old += b" "
    new = replacement.ljust(len(old))
    if raw.count(old) != 1 or len(new) != len(old):
        raise ValueError(f"cannot patch {keyword}: placeholder {old!r} found {raw.count(old)} times")
    return raw.replace(old, new)


def _write_dicom(folder: Path, name: str, data: bytes, names: str = "") -> Built:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.dcm"
    path.write_bytes(data)
    return Built(path, names)


def _ct(src: Sources, change: Callable[[Any], None]) -> bytes:
    ds = _dicom(src.ct_small)
    change(ds)
    return _dicom_bytes(ds)


_DEID_READS_HEADERS = "deid rewrites the header and copies the pixel data as it is; it never decodes them"


@mutation("dicom")
def dicom__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "zero_length", b"")


@mutation("dicom")
def dicom__text_named_dcm(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "text_named_dcm", b"patient list, not an image\n" * 20)


@mutation("dicom")
def dicom__preamble_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "preamble_only", bytes(128) + b"DICM")


@mutation("dicom")
def dicom__truncated_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "truncated_header", src.ct_small[:400])


@mutation("dicom")
def dicom__truncated_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "truncated_pixel_data", src.ct_small[: len(src.ct_small) - 9000])


@mutation("dicom")
def dicom__random_bytes_after_preamble(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "random_bytes_after_preamble", src.ct_small[:132] + rng.randbytes(3000))


@mutation("dicom", valid={"deid": "a header without pixels is de-identified as a header (the skip is for truncated images)"})
def dicom__missing_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(ds: Any) -> None:
        del ds.PixelData
        for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                        "PhotometricInterpretation", "PixelRepresentation"):  # fmt: skip
            delattr(ds, keyword)

    return _write_dicom(folder, "missing_pixel_data", _ct(src, change))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__missing_rows(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "missing_rows", _ct(src, lambda ds: delattr(ds, "Rows")))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rows_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rows_zero", _ct(src, lambda ds: setattr(ds, "Rows", 0)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rows_larger_than_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rows_larger_than_data", _ct(src, lambda ds: setattr(ds, "Rows", 512)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__wrong_bits_allocated(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "wrong_bits_allocated", _ct(src, lambda ds: setattr(ds, "BitsAllocated", 32)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__samples_per_pixel_three(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "samples_per_pixel_three", _ct(src, lambda ds: setattr(ds, "SamplesPerPixel", 3)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__garbage_transfer_syntax(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "garbage_transfer_syntax", _ct(src, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.999"))
    )


@mutation("dicom")
def dicom__rle_syntax_on_native_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    # RLE Lossless claimed in the meta header, the pixels stored native (same length: the meta header stays valid)
    raw = src.ct_small.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00", 1)
    return _write_dicom(folder, "rle_syntax_on_native_pixels", raw)


@mutation("dicom")
def dicom__big_endian_claimed(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.ct_small.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00", 1)
    return _write_dicom(folder, "big_endian_claimed", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__odd_length_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "odd_length_pixel_data", _ct(src, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-3001])))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rescale_slope_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rescale_slope_text", _patched(_dicom(src.ct_small), "RescaleSlope", "7.654321", b"abc.defg"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rescale_slope_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rescale_slope_nan", _patched(_dicom(src.ct_small), "RescaleSlope", "7.654321", b"NaN"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__pixel_spacing_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _patched(_dicom(src.ct_small), "PixelSpacing", ["7.654321", "7.654321"], b"abc\\def")
    return _write_dicom(folder, "pixel_spacing_text", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS, "predict": "a picture model takes pixels, not spacing"})
def dicom__pixel_spacing_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "pixel_spacing_zero", _ct(src, lambda ds: setattr(ds, "PixelSpacing", [0, 0])))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__orientation_degenerate(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "orientation_degenerate", _ct(src, lambda ds: setattr(ds, "ImageOrientationPatient", [0] * 6)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__orientation_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _patched(_dicom(src.ct_small), "ImageOrientationPatient", ["7.654321"] * 6, b"a\\b\\c\\d\\e\\f")
    return _write_dicom(folder, "orientation_text", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__number_of_frames_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "number_of_frames_text", _patched(_dicom(src.ct_small), "NumberOfFrames", "76", b"xy"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__number_of_frames_beyond_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "number_of_frames_beyond_data", _ct(src, lambda ds: setattr(ds, "NumberOfFrames", 5)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__window_center_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "window_center_text", _patched(_dicom(src.ct_small), "WindowCenter", "7.654321", b"level"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__photometric_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "photometric_unknown", _ct(src, lambda ds: setattr(ds, "PhotometricInterpretation", "FOO")))


@mutation("dicom", valid={"info": "SOP Class UID is not needed to read the pixels and geometry", "convert": "SOP Class UID is not needed to convert", "predict": "SOP Class UID is not needed to predict"})
def dicom__missing_sop_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "missing_sop_class", _ct(src, lambda ds: delattr(ds, "SOPClassUID")))


# ---- DICOM series folders ---------------------------------------------------------------------------------------


def _series(folder: Path, src: Sources, change: Callable[[list[Any]], None] | None = None) -> list[Path]:
    """The five real slices in ``folder``, after ``change`` edits their datasets."""
    folder.mkdir(parents=True, exist_ok=True)
    datasets = [_dicom(raw) for raw in src.series]
    if change is not None:
        change(datasets)
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"slice_{i}.dcm"
        path.write_bytes(_dicom_bytes(ds))
        paths.append(path)
    return paths


def _series_built(folder: Path, name: str, src: Sources, change: Callable[[list[Any]], None] | None) -> Built:
    target = folder / f"series_{name}"
    _series(target, src, change)
    return Built(target)


_SKIPPED_NOT_DICOM = "files that are not DICOM are left out of a series folder (info lists them as skipped)"


def _crop_one(datasets: list[Any]) -> None:
    ds = datasets[2]
    pixels = ds.pixel_array[:32, :32]
    ds.PixelData, ds.Rows, ds.Columns = np.ascontiguousarray(pixels).tobytes(), 32, 32


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both stacks and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_size", src, _crop_one)


def _turn_one(datasets: list[Any]) -> None:
    datasets[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both stacks and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_orientation(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_orientation", src, _turn_one)


@mutation("dicom_series", valid={"deid": _DEID_READS_HEADERS})
def dicom_series__one_slice_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_truncated", src, None)
    path = built.path / "slice_3.dcm"
    path.write_bytes(path.read_bytes()[:-5000])
    return Built(built.path, "slice_3.dcm")


@mutation("dicom_series", valid={"deid": "a header without pixels is de-identified as a header"})
def dicom_series__one_slice_without_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(datasets: list[Any]) -> None:
        del datasets[1].PixelData

    built = _series_built(folder, "one_slice_without_pixels", src, change)
    return Built(built.path, "slice_1.dcm")


@mutation(
    "dicom_series",
    valid={
        "info": _SKIPPED_NOT_DICOM,
        "convert": _SKIPPED_NOT_DICOM,
        "predict3d": _SKIPPED_NOT_DICOM,
    },
)
def dicom_series__one_slice_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_zero_length", src, None)
    (built.path / "slice_4.dcm").write_bytes(b"")
    return Built(built.path, "slice_4.dcm")


@mutation("dicom_series")
def dicom_series__one_slice_garbage_after_preamble(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_garbage_after_preamble", src, None)
    path = built.path / "slice_0.dcm"
    path.write_bytes(path.read_bytes()[:132] + rng.randbytes(4000))
    return Built(built.path, "slice_0.dcm")


@mutation(
    "dicom_series",
    valid={
        "info": _SKIPPED_NOT_DICOM,
        "convert": _SKIPPED_NOT_DICOM,
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__text_file_among_slices(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "text_file_among_slices", src, None)
    (built.path / "notes.txt").write_text("scanned on the old machine\n")
    return Built(built.path, "notes.txt")


def _same_position(datasets: list[Any]) -> None:
    for ds in datasets[1:]:
        ds.ImagePositionPatient = datasets[0].ImagePositionPatient


@mutation(
    "dicom_series",
    valid={
        "info": "slices sharing a position are dropped with a warning (repeated acquisitions)",
        "convert": "slices sharing a position are dropped with a warning",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__all_slices_one_position(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "all_slices_one_position", src, _same_position)


def _no_position(datasets: list[Any]) -> None:
    del datasets[2].ImagePositionPatient


@mutation(
    "dicom_series",
    valid={
        "info": "slices without positions are stacked by InstanceNumber, with a warning",
        "convert": "slices without positions are stacked by InstanceNumber, with a warning",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__one_slice_without_position(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_without_position", src, _no_position)


@mutation("dicom_series", valid={"deid": _DEID_READS_HEADERS})
def dicom_series__one_slice_position_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_one_slice_position_text"
    paths = _series(target, src)
    ds = _dicom(paths[2].read_bytes())
    paths[2].write_bytes(_patched(ds, "ImagePositionPatient", ["7.654321"] * 3, b"a\\b\\c"))
    return Built(target, "slice_2.dcm")


@mutation("dicom_series", valid={"deid": _DEID_READS_HEADERS})
def dicom_series__one_slice_position_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_one_slice_position_nan"
    paths = _series(target, src)
    ds = _dicom(paths[2].read_bytes())
    paths[2].write_bytes(_patched(ds, "ImagePositionPatient", ["7.654321"] * 3, b"nan\\nan\\nan"))
    return Built(target, "slice_2.dcm")


def _other_uid(datasets: list[Any]) -> None:
    datasets[4].SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both series and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_series(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_series", src, _other_uid)


@mutation(
    "dicom_series",
    valid={"deid": "an empty folder has nothing to de-identify (0 files)"},
    errors={"predict3d": "an input folder without images is an error, as a missing input is"},
)
def dicom_series__empty_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_empty_folder"
    target.mkdir(parents=True)
    return Built(target)


def _mixed_slope(datasets: list[Any]) -> None:
    datasets[3].RescaleSlope, datasets[3].RescaleIntercept = 2, 0


@mutation(
    "dicom_series",
    valid={
        "info": "slices with their own rescale are each rescaled (and warned about)",
        "convert": "slices with their own rescale are each rescaled (and warned about)",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__one_slice_other_rescale(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_rescale", src, _mixed_slope)


# ---- NIfTI volumes ----------------------------------------------------------------------------------------------
# From the real Hippocampus case 4 (36x52x38 float32, 1 mm); the header offsets are NIfTI-1's (little endian).

_DIM, _DATATYPE, _PIXDIM, _VOX_OFFSET, _SCL_SLOPE, _SFORM_CODE, _SROW_X = 40, 70, 76, 108, 112, 254, 280


def _nifti_raw(src: Sources) -> bytearray:
    return bytearray(gzip.decompress(src.hippocampus[4][1]))


def _nifti_image(src: Sources) -> Any:
    import nibabel as nib

    return nib.Nifti1Image.from_bytes(bytes(_nifti_raw(src)))


def _write_nifti(folder: Path, name: str, payload: bytes, compress: bool = True) -> Built:
    path = folder / f"bad_{name}.nii.gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return Built(path)


def _header_patched(src: Sources, fmt: str, offset: int, *values: float) -> bytes:
    raw = _nifti_raw(src)
    struct.pack_into(fmt, raw, offset, *values)
    return bytes(raw)


def _voxels(src: Sources, change: Callable[[np.ndarray], np.ndarray]) -> bytes:
    import nibabel as nib

    image = _nifti_image(src)
    data = change(np.asarray(image.dataobj, dtype=np.float32).copy())
    out = nib.Nifti1Image(data, image.affine, image.header)
    out.header.set_data_dtype(data.dtype)
    return bytes(out.to_bytes())


_SHOWN_AS_STORED = "info shows what the file holds (its value range reads nan or inf)"
_COPIED_AS_STORED = "convert copies the values the file holds"
_NONFINITE_REFUSED = "a volume with NaN or infinite voxels is refused (predict --nonfinite clean replaces them)"


@mutation("nifti")
def nifti__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "zero_length", b"", compress=False)


@mutation("nifti", commands=("info", "convert", "predict3d", "import-msd", "import-pairs"))
def nifti__truncated_gzip(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.hippocampus[4][1]
    return _write_nifti(folder, "truncated_gzip", raw[: len(raw) // 2], compress=False)


@mutation("nifti")
def nifti__not_gzip(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "not_gzip", b"this is a list of volumes, not a volume\n" * 10, compress=False)


@mutation("nifti")
def nifti__gzip_of_garbage(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "gzip_of_garbage", rng.randbytes(4000))


@mutation("nifti")
def nifti__header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "header_only", bytes(_nifti_raw(src)[:352]))


@mutation("nifti")
def nifti__voxels_cut_short(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _nifti_raw(src)
    return _write_nifti(folder, "voxels_cut_short", bytes(raw[: 352 + (len(raw) - 352) // 2]))


@mutation(
    "nifti",
    valid={
        c: "nibabel repairs a wrong sizeof_hdr (and says so in the log)"
        for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")
    },
)
def nifti__sizeof_hdr_wrong(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "sizeof_hdr_wrong", _header_patched(src, "<i", 0, 123))


@mutation("nifti")
def nifti__dim0_nine(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim0_nine", _header_patched(src, "<h", _DIM, 9))


@mutation("nifti")
def nifti__dim_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim_zero", _header_patched(src, "<h", _DIM + 2, 0))


@mutation("nifti")
def nifti__dim_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim_negative", _header_patched(src, "<h", _DIM + 2, -4))


def _qform_only(src: Sources, *pixdim: float) -> bytes:
    raw = bytearray(_header_patched(src, "<h", _SFORM_CODE, 0))
    struct.pack_into("<3f", raw, _PIXDIM + 4, *pixdim)
    return bytes(raw)


@mutation(
    "nifti",
    valid={
        c: "nibabel repairs zero voxel sizes to 1 mm (and says so in the log); the file has no sform to contradict it"
        for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")
    },
)
def nifti__pixdim_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "pixdim_zero", _qform_only(src, 0.0, 0.0, 0.0))


@mutation("nifti")
def nifti__pixdim_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "pixdim_nan", _qform_only(src, math.nan, 1.0, 1.0))


@mutation("nifti")
def nifti__sform_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "sform_nan", _header_patched(src, "<f", _SROW_X, math.nan))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__nan_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data.flat[np.random.default_rng(rng.randrange(1 << 30)).choice(data.size, 50, replace=False)] = np.nan
        return data

    return _write_nifti(folder, "nan_voxels", _voxels(src, change))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__inf_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data[10, 10, 10], data[20, 20, 20] = np.inf, -np.inf
        return data

    return _write_nifti(folder, "inf_voxels", _voxels(src, change))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__all_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "all_nan", _voxels(src, lambda data: np.full_like(data, np.nan)))


_NO_SCALING = "a scale of 0 or one that is not finite means no scaling (NIfTI; nibabel reads the stored values)"


@mutation(
    "nifti",
    valid={c: _NO_SCALING for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")},
    commands=("info", "convert", "predict3d", "import-msd", "import-pairs"),
)
def nifti__scale_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "scale_zero", _header_patched(src, "<f", _SCL_SLOPE, 0.0))


@mutation("nifti", valid={c: _NO_SCALING for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")})
def nifti__scale_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "scale_infinite", _header_patched(src, "<f", _SCL_SLOPE, math.inf))


@mutation("nifti")
def nifti__datatype_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "datatype_unknown", _header_patched(src, "<h", _DATATYPE, 1234))


@mutation("nifti")
def nifti__vox_offset_beyond_end(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "vox_offset_beyond_end", _header_patched(src, "<f", _VOX_OFFSET, 1e6))


@mutation("nifti")
def nifti__five_dimensions(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "five_dimensions", _voxels(src, lambda data: np.stack([data, data], -1)[..., None, :]))


@mutation(
    "nifti",
    valid={"info": "a 4D volume is read as channels", "convert": "a 4D volume is converted as channels"},
)
def nifti__two_volumes(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "two_volumes", _voxels(src, lambda data: np.stack([data, data], -1)))


@mutation("nifti")
def nifti__complex_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "complex_voxels", _voxels(src, lambda data: data.astype(np.complex64) * (1 + 1j)))


# Masks (labels) of one case: image and mask must agree, values must be the declared classes.


def _label(src: Sources, change: Callable[[np.ndarray], np.ndarray], affine_shift: float = 0.0) -> bytes:
    import nibabel as nib

    label = nib.Nifti1Image.from_bytes(gzip.decompress(src.hippocampus[4][2]))
    data = change(np.asarray(label.dataobj).copy())
    affine = label.affine.copy()
    affine[0, 3] += affine_shift
    out = nib.Nifti1Image(data, affine)
    out.header.set_data_dtype(data.dtype)
    return gzip.compress(bytes(out.to_bytes()), mtime=0)


def _write_label(folder: Path, name: str, payload: bytes) -> Built:
    path = folder / f"bad_{name}.nii.gz"
    path.write_bytes(payload)
    return Built(path)


@mutation("nifti_label")
def nifti_label__value_outside_classes(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data[data == 2] = 7
        return data

    return _write_label(folder, "value_outside_classes", _label(src, change))


@mutation("nifti_label")
def nifti_label__negative_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "negative_value", _label(src, lambda data: data.astype(np.int16) - 1))


@mutation("nifti_label")
def nifti_label__fractional_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "fractional_value", _label(src, lambda data: data.astype(np.float32) * 0.5))


@mutation("nifti_label")
def nifti_label__nan_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        out = data.astype(np.float32)
        out[5, 5, 5] = np.nan
        return out

    return _write_label(folder, "nan_value", _label(src, change))


@mutation("nifti_label")
def nifti_label__other_shape(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "other_shape", _label(src, lambda data: np.ascontiguousarray(data[:-3])))


@mutation("nifti_label")
def nifti_label__other_origin(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "other_origin", _label(src, lambda data: data, affine_shift=5.0))


@mutation("nifti_label")
def nifti_label__two_channels(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "two_channels", _label(src, lambda data: np.stack([data, data], -1)))


@mutation("nifti_label")
def nifti_label__truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.hippocampus[4][2]
    return _write_label(folder, "truncated", raw[: len(raw) // 2])


# ---- pictures ---------------------------------------------------------------------------------------------------
# From a real 28x28 chest X-ray (PNG, TIFF) and a real 640x480 BCCD blood smear (JPEG).


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_size(src: Sources, width: int, height: int) -> bytes:
    """The real PNG with its IHDR size replaced (CRC recomputed, so only the size is wrong)."""
    raw = png_bytes(src.xray(0))
    ihdr = bytearray(raw[16:29])
    struct.pack_into(">II", ihdr, 0, width, height)
    return raw[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + raw[33:]


def _picture(folder: Path, name: str, suffix: str, payload: bytes) -> Built:
    path = folder / f"bad_{name}{suffix}"
    path.write_bytes(payload)
    return Built(path)


def _pil(array: np.ndarray, fmt: str, mode: str | None = None, **options: Any) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    picture = PILImage.fromarray(array, mode) if mode else PILImage.fromarray(array)
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


_INDEXED = "classification importers index files and describe a sample; training checks the pixel values it reads"
_ODD_BUT_VALID = {
    "info": "an unusual but valid picture mode",
    "convert": "an unusual but valid picture mode",
    "predict": "an unusual but valid picture mode is converted to the model's channels",
    "import-folder": "an unusual but valid picture mode",
    "import-csv": "an unusual but valid picture mode",
}


@mutation("picture")
def picture__png_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = png_bytes(src.xray(0))
    return _picture(folder, "png_truncated", ".png", raw[: len(raw) // 2])


@mutation("picture")
def picture__png_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_zero_length", ".png", b"")


@mutation("picture")
def picture__png_header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_header_only", ".png", png_bytes(src.xray(0))[:33])


@mutation("picture")
def picture__png_corrupt_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = bytearray(png_bytes(src.xray(0)))
    start = raw.index(b"IDAT") + 4
    for i in range(start + 2, start + 40):
        raw[i] ^= 0xFF
    return _picture(folder, "png_corrupt_pixels", ".png", bytes(raw))


@mutation("picture")
def picture__png_decompression_bomb_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_decompression_bomb_header", ".png", _png_with_size(src, 100_000, 100_000))


@mutation("picture")
def picture__png_zero_width(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_zero_width", ".png", _png_with_size(src, 0, 28))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_16_bit(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_16_bit", ".png", _pil(src.xray(0).astype(np.uint16) * 257, "PNG"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_1_bit(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_1_bit", ".png", _pil(src.xray(0) > 128, "PNG"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_grey_alpha(folder: Path, src: Sources, rng: random.Random) -> Built:
    grey = src.xray(0)
    return _picture(folder, "png_grey_alpha", ".png", _pil(np.stack([grey, np.full_like(grey, 255)], -1), "PNG"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_palette_transparency(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    picture = PILImage.fromarray(np.stack([src.xray(0)] * 3, -1)).quantize(16)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", transparency=0)
    return _picture(folder, "png_palette_transparency", ".png", buffer.getvalue())


@mutation("picture")
def picture__text_named_png(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "text_named_png", ".png", b"<html>not a picture</html>\n")


@mutation(
    "picture",
    errors={"predict": "an input that cannot exist fails the whole batch, as a missing input does"},
    commands=("info", "convert", "predict", "import-csv"),
)
def picture__name_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return Built(folder / ("x" * 300 + ".png"), "xxxxxxxxxx")  # no file system holds the name: it cannot exist


@mutation("picture")
def picture__jpeg_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.bccd[0][1]
    return _picture(folder, "jpeg_truncated", ".jpg", raw[: len(raw) // 3])


@mutation("picture")
def picture__jpeg_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "jpeg_zero_length", ".jpg", b"")


@mutation("picture")
def picture__jpeg_garbage_after_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.bccd[0][1]
    return _picture(folder, "jpeg_garbage_after_header", ".jpg", raw[:600] + rng.randbytes(3000))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__jpeg_cmyk(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    picture = PILImage.open(io.BytesIO(src.bccd[0][1])).convert("CMYK")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    return _picture(folder, "jpeg_cmyk", ".jpg", buffer.getvalue())


@mutation("picture")
def picture__tiff_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _pil(src.xray(1), "TIFF")
    return _picture(folder, "tiff_truncated", ".tif", raw[: len(raw) // 2])


@mutation(
    "picture",
    valid={
        "info": "info shows what the file holds (its value range reads nan)",
        "convert": "convert copies what the file holds",
        "import-folder": _INDEXED,
        "import-csv": _INDEXED,
    },
)
def picture__tiff_float_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    values = src.xray(1).astype(np.float32)
    values[3:6, 3:6] = np.nan
    return _picture(folder, "tiff_float_nan", ".tif", _pil(values, "TIFF"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__tiff_pages_of_other_sizes(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    first, second = PILImage.fromarray(src.xray(1)), PILImage.fromarray(src.xray(2)[:14, :20])
    buffer = io.BytesIO()
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    return _picture(folder, "tiff_pages_of_other_sizes", ".tif", buffer.getvalue())


@mutation("picture")
def picture__bmp_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _pil(src.xray(2), "BMP")
    return _picture(folder, "bmp_truncated", ".bmp", raw[: len(raw) // 2])


# ---- MedMNIST archives ------------------------------------------------------------------------------------------
# From 80/20/20 real PneumoniaMNIST images; named pneumoniamnist.npz so the catalog knows the dataset.

_SEVERAL_ARRAYS = "a MedMNIST archive holds several arrays: info asks which one (key=)"


def _npz(folder: Path, arrays: dict[str, np.ndarray], name: str = "pneumoniamnist.npz") -> Built:
    path = folder / name
    np.savez_compressed(path, **arrays)
    return Built(path)


def _arrays(src: Sources) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in src.pneumonia.items()}


@mutation("npz")
def npz__missing_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    del arrays["test_labels"]
    return _npz(folder, arrays)


@mutation("npz")
def npz__keys_renamed(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _npz(folder, {k.replace("images", "x").replace("labels", "y"): v for k, v in _arrays(src).items()})


@mutation("npz")
def npz__labels_shorter_than_images(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["train_labels"] = arrays["train_labels"][:-5]
    return _npz(folder, arrays)


@mutation("npz")
def npz__labels_three_dimensional(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["val_labels"] = arrays["val_labels"][:, :, None]
    return _npz(folder, arrays)


@mutation("npz")
def npz__negative_labels(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["train_labels"] = arrays["train_labels"].astype(np.int64) - 1
    return _npz(folder, arrays)


@mutation("npz")
def npz__nan_labels(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    labels = arrays["train_labels"].astype(np.float64)
    labels[3] = np.nan
    arrays["train_labels"] = labels
    return _npz(folder, arrays)


@mutation("npz")
def npz__float_images_with_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    images = arrays["test_images"].astype(np.float64)
    images[0, 5, 5] = np.nan
    arrays["test_images"] = images
    return _npz(folder, arrays)


@mutation("npz")
def npz__int64_images(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["val_images"] = arrays["val_images"].astype(np.int64)
    return _npz(folder, arrays)


@mutation("npz")
def npz__images_one_dimensional(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = arrays[f"{split}_images"][:, 0, 0]
    return _npz(folder, arrays)


@mutation("npz", valid={"import-medmnist": "an archive without test images imports; evaluate says the split is empty"})
def npz__empty_test_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["test_images"], arrays["test_labels"] = arrays["test_images"][:0], arrays["test_labels"][:0]
    return _npz(folder, arrays)


@mutation("npz", valid={"import-medmnist": "images of several sizes make a valid dataset (the plan resizes them)"})
def npz__images_of_other_size_per_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["test_images"] = np.ascontiguousarray(arrays["test_images"][:, :20, :24])
    return _npz(folder, arrays)


@mutation("npz")
def npz__pickled_object_array(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    payload = np.empty(len(arrays["train_labels"]), dtype=object)
    payload[:] = [pickle_payload(marker_for(folder))] * len(payload)
    arrays["train_labels"] = payload
    path = folder / "pneumoniamnist.npz"
    np.savez(path, **arrays)  # object arrays are stored as pickles
    return Built(path)


@mutation("npz")
def npz__truncated_zip(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _npz(folder, _arrays(src))
    raw = built.path.read_bytes()
    built.path.write_bytes(raw[: len(raw) // 2])
    return built


@mutation("npz")
def npz__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "pneumoniamnist.npz"
    path.write_bytes(b"")
    return Built(path)


@mutation("npz")
def npz__text_named_npz(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "pneumoniamnist.npz"
    path.write_text("train_images,train_labels\n1,2\n")
    return Built(path)


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


@mutation("class_folder", valid={"import-folder": "a class with one image is kept (in one split); a warning says why"})
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


# ---- Pascal VOC folders -------------------------------------------------------------------------------------------

_KEPT_AND_WARNED = "the box is clipped to the image, or dropped when nothing is left, with a warning naming the file"


def _voc(folder: Path, src: Sources, change: Callable[[str], str] | None = None, index: int = 1) -> Built:
    """The VOC folder with annotation ``index`` edited as text (the XML as a broken tool would write it)."""
    voc = voc_folder(folder / "voc", src)
    stem = src.bccd[index][0]
    path = voc / "Annotations" / f"{stem}.xml"
    if change is not None:
        path.write_text(change(path.read_text()))
    return Built(voc, path.name)


def _first_box(xml: str, **values: str) -> str:
    import re

    for key, value in values.items():
        xml = re.sub(f"<{key}>[^<]*</{key}>", f"<{key}>{value}</{key}>", xml, count=1)
    return xml


@mutation("voc")
def voc__xml_not_xml(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: "annotation: RBC 10 20 30 40\n")


@mutation("voc")
def voc__xml_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml[: len(xml) // 2])


@mutation("voc")
def voc__box_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="nan"))


@mutation("voc")
def voc__box_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmax="inf"))


@mutation("voc")
def voc__box_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, ymin="twelve"))


@mutation("voc")
def voc__box_coordinate_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml.replace("<ymax>", "<ymaximum>", 1).replace("</ymax>", "</ymaximum>", 1))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="-50", ymin="-50"))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_inverted(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="300", xmax="100"))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_outside_the_image(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="5000", ymin="5000", xmax="6000", ymax="6000"))


@mutation("voc", valid={"import-voc": "objects of an unknown class are left out, with a warning naming them"})
def voc__unknown_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml.replace("<name>RBC</name>", "<name>Alien</name>", 1))


@mutation("voc")
def voc__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    stem = src.bccd[1][0]
    (built.path / "JPEGImages" / f"{stem}.jpg").unlink()
    return Built(built.path, f"{stem}.jpg")


@mutation("voc")
def voc__image_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    stem = src.bccd[1][0]
    path = built.path / "JPEGImages" / f"{stem}.jpg"
    path.write_bytes(path.read_bytes()[:5000])
    return Built(built.path, f"{stem}.jpg")


@mutation("voc")
def voc__filename_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, filename="../../../../etc/hostname"))


@mutation("voc")
def voc__filename_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, filename="x" * 300 + ".jpg"))


@mutation("voc")
def voc__external_entity(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(xml: str) -> str:
        doctype = '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/hostname">]>\n'
        return doctype + xml.replace("<name>RBC</name>", "<name>&secret;</name>", 1)

    return _voc(folder, src, change)


@mutation("voc")
def voc__size_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, width="wide"))


@mutation("voc")
def voc__image_sets_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    path = built.path / "ImageSets" / "Main" / "val.txt"
    path.write_bytes(path.read_bytes() + b"caf\xe9\n")
    return Built(built.path, "val.txt")


@mutation("voc")
def voc__no_objects_anywhere(folder: Path, src: Sources, rng: random.Random) -> Built:
    import re

    voc = voc_folder(folder / "voc", src)
    for path in (voc / "Annotations").glob("*.xml"):
        path.write_text(re.sub(r"<object>.*?</object>", "", path.read_text(), flags=re.S))
    return Built(voc, "Annotations")


# ---- COCO annotations ---------------------------------------------------------------------------------------------


def _coco(folder: Path, src: Sources, change: Callable[[dict[str, Any]], Any] | None = None, text: str | None = None) -> Built:
    content = coco_content(src)
    if change is not None:
        content = change(content) or content
    target = coco_folder(folder / "coco", src, content)
    if text is not None:
        (target / "annotations.json").write_text(text)
    return Built(target, "annotations.json")


def _first_annotation(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        content["annotations"][0].update(values)

    return change


@mutation("coco")
def coco__not_json(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, text='{"images": [{"id": 1, "file_name": ')


@mutation("coco")
def coco__not_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, text="[]")


@mutation("coco")
def coco__images_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"images": {"1": "a.jpg"}})


@mutation("coco")
def coco__annotations_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"annotations": "none"})


@mutation("coco")
def coco__image_without_id(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].pop("id") and None)


@mutation("coco")
def coco__id_fractional(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(id=1.5))


@mutation("coco")
def coco__id_boolean(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(category_id=True))


@mutation("coco")
def coco__bbox_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[math.nan, 10, 20, 20]))


@mutation("coco")
def coco__bbox_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[10, 10, math.inf, 20]))


@mutation("coco")
def coco__bbox_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=["ten", 10, 20, 20]))


@mutation("coco")
def coco__bbox_five_values(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[10, 10, 20, 20, 1]))


@mutation("coco")
def coco__bbox_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox={"x": 1, "y": 2, "w": 3, "h": 4}))


@mutation("coco", valid={"import-coco": _KEPT_AND_WARNED})
def coco__bbox_negative_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[100, 100, -40, -40]))


@mutation("coco", valid={"import-coco": "annotations of an unknown category are left out, with a warning naming it"})
def coco__unknown_category(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(category_id=99))


@mutation("coco")
def coco__no_categories(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"categories": []})


@mutation("coco")
def coco__file_name_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name="../../../../etc/hostname"))


@mutation("coco")
def coco__file_name_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name="x" * 300 + ".jpg"))


@mutation("coco")
def coco__file_name_not_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name={"path": "a.jpg"}))


@mutation("coco")
def coco__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _coco(folder, src, lambda c: c["images"][0].update(file_name="missing.jpg"))
    return Built(built.path, "missing.jpg")


@mutation("coco")
def coco__same_file_twice(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(content: dict[str, Any]) -> None:
        content["images"].append(dict(content["images"][0], id=99))

    built = _coco(folder, src, change)
    return Built(built.path, src.bccd[0][0])


@mutation("coco")
def coco__not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _coco(folder, src)
    path = built.path / "annotations.json"
    path.write_bytes(path.read_bytes().replace(b'"RBC"', b'"RBC \xe9"'))
    return built


# ---- YOLO folders -------------------------------------------------------------------------------------------------


def _yolo(folder: Path, src: Sources, change: Callable[[str], str] | None = None) -> Built:
    root = yolo_folder(folder / "yolo", src)
    path = root / "labels" / "train" / f"{src.bccd[1][0]}.txt"
    if change is not None:
        path.write_text(change(path.read_text()))
    return Built(root, path.name)


def _first_line(**fields: str) -> Callable[[str], str]:
    order = ("index", "cx", "cy", "w", "h")

    def change(text: str) -> str:
        lines = text.splitlines()
        parts = lines[0].split()
        for key, value in fields.items():
            parts[order.index(key)] = value
        return "\n".join([" ".join(parts), *lines[1:]]) + "\n"

    return change


@mutation("yolo")
def yolo__line_too_short(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, lambda text: "1 0.5 0.5\n" + text)


@mutation("yolo")
def yolo__value_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cx="nan"))


@mutation("yolo")
def yolo__value_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(w="1e999"))


@mutation("yolo")
def yolo__value_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cy="middle"))


@mutation("yolo")
def yolo__class_index_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="-1"))


@mutation("yolo")
def yolo__class_index_fractional(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="1.5"))


@mutation("yolo", valid={"import-yolo": "objects of an unknown class index are left out, with a warning naming them"})
def yolo__class_index_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="7"))


@mutation("yolo", valid={"import-yolo": _KEPT_AND_WARNED})
def yolo__box_outside_the_image(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cx="3.5", cy="-2"))


@mutation("yolo", valid={"import-yolo": _KEPT_AND_WARNED})
def yolo__box_negative_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(w="-0.1"))


@mutation("yolo")
def yolo__labels_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    path = built.path / "labels" / "train" / built.names
    path.write_bytes(b"\xff\xfe" + path.read_bytes())
    return built


@mutation("yolo")
def yolo__data_yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: [Platelets, RBC\n  WBC: [")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__data_yaml_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("- Platelets\n- RBC\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__names_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: 3\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__names_keys_not_indices(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: {a: Platelets, b: RBC}\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__no_class_names(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").unlink()
    return Built(built.path)


@mutation("yolo")
def yolo__python_tag_in_data_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    marker = marker_for(folder)
    (built.path / "data.yaml").write_text(f'names: !!python/object/apply:builtins.open ["{marker}", "w"]\n')
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__image_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    path = built.path / "images" / "train" / f"{src.bccd[1][0]}.jpg"
    path.write_bytes(path.read_bytes()[:5000])
    return Built(built.path, path.name)


# ---- dataset folders ----------------------------------------------------------------------------------------------
# ``folder`` is a copy of a good dataset (80/20/20 real PneumoniaMNIST images imported by medlens); each mutation
# edits it the way a hand edit, a script or a received copy could.


def _edit(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text()))


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
    _edit(folder / "dataset.yaml", lambda text: text + "colour: grey\n")
    return Built(folder, "colour")


@mutation("dataset")
def dataset__yaml_spatial_dims_four(folder: Path, src: Sources, rng: random.Random) -> Built:
    _edit(folder / "dataset.yaml", lambda text: text.replace("spatial_dims: 2", "spatial_dims: 4"))
    return Built(folder, "spatial_dims")


@mutation("dataset")
def dataset__yaml_unknown_task(folder: Path, src: Sources, rng: random.Random) -> Built:
    _edit(folder / "dataset.yaml", lambda text: text.replace("task: classification", "task: prognosis"))
    return Built(folder, "prognosis")


@mutation("dataset")
def dataset__yaml_classes_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    _edit(folder / "dataset.yaml", lambda text: text.replace("classes:\n- normal\n- pneumonia\n", "classes: 2\n"))
    return Built(folder, "classes")


@mutation("dataset")
def dataset__yaml_python_tag(folder: Path, src: Sources, rng: random.Random) -> Built:
    marker = marker_for(folder)
    _edit(folder / "dataset.yaml", lambda text: text + f'notes: !!python/object/apply:builtins.open ["{marker}", "w"]\n')
    return Built(folder, "dataset.yaml")


@mutation("dataset")
def dataset__manifest_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "manifest.csv").unlink()
    return Built(folder, "manifest.csv")


@mutation("dataset")
def dataset__manifest_outside_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    _edit(folder / "dataset.yaml", lambda text: text.replace("manifest: manifest.csv", "manifest: ../../manifest.csv"))
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
    for split in ("train", "test"):
        (folder / "images" / f"{split}_00006.png").unlink()
        (folder / "images" / f"{split}_00006.tif").write_bytes(_pil(values, "TIFF"))
    _edit(folder / "manifest.csv", lambda text: text.replace("_00006.png", "_00006.tif"))
    return Built(folder, "_00006.tif")


@mutation("dataset")
def dataset__image_of_another_dimension(folder: Path, src: Sources, rng: random.Random) -> Built:
    for split in ("train", "test"):
        (folder / "images" / f"{split}_00007.png").unlink()
        (folder / "images" / f"{split}_00007.nii.gz").write_bytes(src.hippocampus[0][1])
    _edit(folder / "manifest.csv", lambda text: text.replace("_00007.png", "_00007.nii.gz"))
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
    _edit(folder / "dataset.yaml", lambda text: text.replace("- pneumonia\n", "- pneumonia\n- covid\n"))
    return Built(folder)


@mutation("dataset")
def dataset__unknown_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    _manifest_rows(folder, lambda rows: [r.replace(",train", ",holdout", 5) if i < 5 else r for i, r in enumerate(rows)])
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


def _checkpoint_with_payload(path: Path, marker: Path) -> None:
    import torch

    torch.save({"state_dict": {}, "epoch": 1, "payload": pickle_payload(marker)}, path)


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
    _checkpoint_with_payload(folder / "weights.pt", marker_for(folder))
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


@mutation("set", valid={"plan": "the plan records the network's name ('medlens models' lists them); training builds it"})
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
    _checkpoint_with_payload(folder.parent / "weights.pt", marker_for(folder))
    return _set(folder, f"model.pretrained={folder.parent / 'weights.pt'}", names="weights.pt")


# ---- bundles ------------------------------------------------------------------------------------------------------
# ``folder`` is a copy of a trained run (run.yaml, plan.yaml, bundle/); the mutations edit its bundle.


def _spec(folder: Path, change: Callable[[dict[str, Any]], Any], names: str = "bundle.yaml") -> Built:
    import yaml

    path = folder / "bundle" / "bundle.yaml"
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return Built(folder, names)


def _spec_text(folder: Path, text: str | bytes) -> Built:
    path = folder / "bundle" / "bundle.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return Built(folder, "bundle.yaml")


def _weights(folder: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Built:
    from safetensors.torch import load_file, save_file

    path = folder / "bundle" / "member_0.safetensors"
    save_file(change(load_file(str(path))), str(path))
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__yaml_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "bundle.yaml").unlink()
    return Built(folder)


@mutation("bundle")
def bundle__yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "task: classification\nplan: {data: [\n")


@mutation("bundle")
def bundle__yaml_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "- member_0.safetensors\n")


@mutation("bundle")
def bundle__yaml_empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "")


@mutation("bundle")
def bundle__yaml_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, (folder / "bundle" / "bundle.yaml").read_bytes().replace(b"format:", b"f\xf6rmat:", 1))


@mutation("bundle")
def bundle__yaml_python_tag(folder: Path, src: Sources, rng: random.Random) -> Built:
    text = (folder / "bundle" / "bundle.yaml").read_text()
    return _spec_text(folder, text + f'extra: !!python/object/apply:builtins.open ["{marker_for(folder)}", "w"]\n')


@mutation("bundle")
def bundle__format_from_the_future(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(format="medlens-bundle/99"), "medlens-bundle/99")


@mutation("bundle")
def bundle__plan_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.pop("plan"))


@mutation("bundle")
def bundle__plan_batch_size_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["train"].update(batch_size=0), "train.batch_size")


@mutation("bundle")
def bundle__plan_learning_rate_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["optim"].update(lr=math.nan), "optim.lr")


@mutation("bundle")
def bundle__plan_version_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"].update(version=[2]), "version")


@mutation("bundle")
def bundle__plan_unknown_task(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"].update(task="prognosis"), "prognosis")


@mutation("bundle")
def bundle__plan_unknown_model_argument(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["model"]["kwargs"].update(depth_multiplier=3), "model.kwargs")


@mutation("bundle")
def bundle__members_empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(members=[]))


@mutation("bundle")
def bundle__member_leaving_the_bundle(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "member_0.safetensors").write_bytes((folder / "bundle" / "member_0.safetensors").read_bytes())
    return _spec(folder, lambda s: s.update(members=["../member_0.safetensors"]))


@mutation("bundle")
def bundle__member_absolute_path(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(members=[str(folder / "bundle" / "member_0.safetensors")]))


@mutation("bundle")
def bundle__member_not_safetensors(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "member_0.safetensors").rename(folder / "bundle" / "member_0.pt")
    return _spec(folder, lambda s: s.update(members=["member_0.pt"]))


@mutation("bundle")
def bundle__member_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "member_0.safetensors").unlink()
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "bundle" / "member_0.safetensors"
    path.write_bytes(pickle.dumps({"conv1.weight": pickle_payload(marker_for(folder))}))
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "bundle" / "member_0.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_tensor_of_another_shape(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        key = next(k for k, v in state.items() if v.ndim == 4)
        state[key] = state[key][:, :, :2, :2].contiguous()
        return state

    return _weights(folder, change)


@mutation("bundle")
def bundle__member_tensor_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        dropped = next(k for k, v in state.items() if v.ndim == 4)  # a convolution's weights
        return {k: v for k, v in state.items() if k != dropped}

    return _weights(folder, change)


@mutation("bundle")
def bundle__member_tensor_extra(folder: Path, src: Sources, rng: random.Random) -> Built:
    import torch

    return _weights(folder, lambda state: state | {"extra.weight": torch.zeros(3)})


@mutation("bundle")
def bundle__member_weights_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        key = next(k for k, v in state.items() if v.ndim == 4)
        state[key] = state[key].clone()
        state[key][0] = float("nan")
        return state

    return _weights(folder, change)


@mutation("bundle")
def bundle__threshold_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold="high"), "threshold")


@mutation("bundle")
def bundle__threshold_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold=math.nan), "threshold")


@mutation("bundle")
def bundle__threshold_out_of_range(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold=7.5), "threshold")


@mutation("bundle")
def bundle__info_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(info=["trained", "yesterday"]), "info")


# ---- run folders to resume ----------------------------------------------------------------------------------------
# ``folder`` is a copy of a trained run whose member has not finished (its summary.json removed): ``--resume``
# continues it from seed_0/checkpoints/last.ckpt.


def _last(folder: Path) -> Path:
    return folder / "seed_0" / "checkpoints" / "last.ckpt"


@mutation("run")
def run__checkpoint_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    _checkpoint_with_payload(_last(folder), marker_for(folder))
    return Built(folder, "last.ckpt")


@mutation("run")
def run__checkpoint_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = _last(folder)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return Built(folder, "last.ckpt")


@mutation("run")
def run__checkpoint_not_a_checkpoint(folder: Path, src: Sources, rng: random.Random) -> Built:
    _last(folder).write_text("interrupted\n")
    return Built(folder, "last.ckpt")


@mutation("run")
def run__run_yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "run.yaml").write_text("dataset: [\n")
    return Built(folder, "run.yaml")


@mutation("run")
def run__run_yaml_other_dataset(folder: Path, src: Sources, rng: random.Random) -> Built:
    _edit(folder / "run.yaml", lambda text: "\n".join(
        "dataset: /elsewhere/ds" if line.startswith("dataset:") else line for line in text.splitlines()) + "\n")  # fmt: skip
    return Built(folder, "/elsewhere/ds")


@mutation("run")
def run__plan_yaml_broken(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "plan.yaml").write_text("train: {batch_size: 0}\n")
    return Built(folder, "plan.yaml")


@mutation("run")
def run__summary_not_json(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "seed_0" / "summary.json").write_text('{"member": "seed_0", "epochs": ')
    return Built(folder, "summary.json")
