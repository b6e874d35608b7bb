"""A dataset built from a PACS over DICOMweb: images by series, labels from DICOM SEG or from a table.

For every study a QIDO-RS query finds:

- ``labels="seg"`` (segmentation): the study's DICOM SEG and the image series it references are retrieved
  (WADO-RS); the SEG becomes a NIfTI label map on that series' grid (``masks/<case>.nii.gz``), its segment labels
  the class names (every study's SEG must name the same segments).
- ``labels=<CSV>`` (classification): a table keyed by ``StudyInstanceUID`` or ``AccessionNumber`` (whichever
  column it has) gives each study's class in ``label_column``; the study's image series (the one with most
  images) is retrieved. Studies the table does not name are left out, and counted.

Images stay DICOM, one folder per case (``images/<case>/``). With ``deid`` everything retrieved is de-identified
(:func:`medlens.deidentify`, PS3.15 Basic profile, keyed pseudonyms and UID remapping with ``key``) *before*
anything is read from it: the dataset holds no identifier, case ids are numbers in the order found, and patient
ids (which keep the patient-level splits) are the keyed pseudonyms. The retrieved originals live only in a
temporary folder that is removed at the end, whatever happens.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import check_output_folder, output_folder
from medlens.core.progress import ProgressFn, report
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, read_csv_table, write_dataset
from medlens.data.importers import register_importer
from medlens.data.labels import apply_label_fraction
from medlens.data.splits import assign_splits

if TYPE_CHECKING:
    from medlens.pacs.dicomweb import DicomWebServer

log = logging.getLogger(__name__)
KEY_COLUMNS = ("StudyInstanceUID", "AccessionNumber")


@dataclass
class _Study:
    """One study as retrieved: its files (images, and the SEG for segmentation) and its label."""

    index: int
    uid: str
    images: list[Path] = field(default_factory=list)
    seg: Path | None = None
    label: str | None = None


@register_importer("dicomweb")
def import_dicomweb(
    url: str,
    out: str | Path,
    *,
    query: str | None = None,
    labels: str | Path = "seg",
    label_column: str = "label",
    deid: bool = False,
    key: str | Path | None = None,
    token: str | None = None,
    user: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Build a dataset from the studies a DICOMweb server finds (see the module docstring).

    Args:
        url: the DICOMweb service (e.g. ``http://pacs:8042/dicom-web``).
        out: the dataset folder to write.
        query: QIDO-RS filters, e.g. ``ModalityInStudy=MR&StudyDate=20240101-`` (none: every study).
        labels: ``seg`` (labels from the DICOM SEG in each study), or a CSV file of study labels.
        label_column: the CSV column holding each study's class.
        deid: de-identify everything on the way in.
        key: the de-identification key file (default: the one in ``MEDLENS_HOME``).
        token: a bearer token for the server.
        user: ``USER:PASSWORD`` for HTTP basic authentication.
        val_fraction: share of patients for validation.
        test_fraction: share of patients for testing.
        seed: seed of the split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing ``out`` that medlens made.
        progress: called as ``progress("retrieving studies", done, total)``.

    Example:
        >>> url = "http://pacs:8042/dicom-web"
        >>> import_dicomweb(url, "datasets/hippo", query="ModalitiesInStudy=MR", deid=True)  # doctest: +SKIP
    """
    from medlens.pacs.dicomweb import DicomWebServer, parse_query

    check_output_folder(out, overwrite=overwrite)  # before the network: a refused --out costs nothing
    table = _read_table(Path(labels), label_column) if str(labels) != "seg" else None
    server = DicomWebServer(url, token=token, user=user)
    uids = server.studies(parse_query(query))
    if not uids:
        raise InputError(out, f"the query {query or '(none)'} found no study on {url}")
    with tempfile.TemporaryDirectory(prefix="medlens-dicomweb-") as scratch:
        raw = Path(scratch) / "retrieved"
        studies = []
        for i, uid in enumerate(uids):
            study = _retrieve(server, uid, i, raw / f"{i:05d}", table)
            if study is not None:
                studies.append(study)
            report(progress, "retrieving studies", i + 1, len(uids))
        if not studies:
            raise InputError(
                out, f"none of the {len(uids)} studies found has {'a SEG' if table is None else 'a label'}"
            )
        if deid:
            studies = _deidentified(studies, raw, Path(scratch) / "deid", key)
        with output_folder(out, kind="dataset", overwrite=overwrite) as tmp:
            spec, cases = _write_cases(studies, tmp, Path(out).name, table is not None, progress)
            spec.source = {
                "format": "dicomweb",
                "url": server.url,
                "query": query or "",
                "labels": "seg" if table is None else Path(labels).name,
                "deidentified": "yes (PS3.15 Basic profile, keyed)" if deid else "no",
            }
            assign_splits(cases, None, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
            write_dataset(tmp, *apply_label_fraction(spec, cases, label_fraction, seed))
    log.info("imported %d of %d studies (%s)", len(studies), len(uids), "de-identified" if deid else "as stored")
    return load_dataset(out)


def _read_table(path: Path, label_column: str) -> dict[tuple[str, str], str]:
    """(key column, value) to class name, from a CSV keyed by StudyInstanceUID or AccessionNumber."""
    columns, rows = read_csv_table(path)
    keys = [c for c in KEY_COLUMNS if c in columns]
    if not keys:
        raise InputError(path, f"no {' or '.join(KEY_COLUMNS)} column (found {', '.join(columns) or 'none'})")
    if label_column not in columns:
        raise InputError(path, f"no {label_column!r} column (found {', '.join(columns)}); see --label-column")
    table = {}
    for line, row in rows:
        label = row[label_column].strip()
        if not label:
            raise InputError(path, f"line {line}: empty {label_column}")
        for k in keys:
            if row[k].strip():
                table[(k, row[k].strip())] = label
    if not table:
        raise InputError(path, "no labelled rows")
    return table


def _retrieve(
    server: DicomWebServer, uid: str, index: int, folder: Path, table: dict[tuple[str, str], str] | None
) -> _Study | None:
    """Retrieve one study's labelled series (and SEG); None when it has no label (logged)."""
    from medlens.pacs.rules import SeriesRules, choose_series

    series = server.series(uid)
    study = _Study(index, uid)
    if table is None:
        segs = [s for s in series if s.modality == "SEG"]
        if not segs:
            log.warning("study %s: no SEG, left out", uid)
            return None
        if len(segs) > 1:
            log.warning("study %s: %d SEGs, the first is used", uid, len(segs))
        (seg_file,) = server.retrieve(uid, segs[0].series_uid, folder / "seg")[:1]
        referenced = _referenced_series(seg_file)
        if referenced not in {s.series_uid for s in series}:
            raise InputError(seg_file, f"references series {referenced}, which study {uid} does not hold")
        study.seg = seg_file
        study.images = server.retrieve(uid, referenced, folder / "image")
        return study
    attributes = server.study_attributes(uid)
    label = next((table[(k, attributes[k])] for k in KEY_COLUMNS if (k, attributes.get(k, "")) in table), None)
    if label is None:
        log.warning("study %s: not in the label table, left out", uid)
        return None
    chosen, _ = choose_series(SeriesRules(), series)
    if chosen is None:
        log.warning("study %s: no image series, left out", uid)
        return None
    study.label = label
    study.images = server.retrieve(uid, chosen.series_uid, folder / "image")
    return study


def _referenced_series(seg_file: Path) -> str:
    ds = pydicom.dcmread(seg_file, stop_before_pixels=True)
    try:
        return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        raise InputError(seg_file, "a SEG that names no referenced series") from None


def _deidentified(studies: list[_Study], raw: Path, target: Path, key: str | Path | None) -> list[_Study]:
    """The studies with every file replaced by its de-identified copy; a study losing any file is left out."""
    from medlens.deid import deidentify

    outputs: dict[str, str | None] = {}

    def note(result: object) -> None:
        outputs[str(result.source)] = result.output if result.status == "written" else None  # type: ignore[attr-defined]

    deidentify(raw, target, key=key, on_file=note)
    kept = []
    for study in studies:
        files = [*study.images, *([study.seg] if study.seg else [])]
        done = [outputs.get(p.relative_to(raw).as_posix()) for p in files]
        if any(d is None for d in done):
            log.warning("study %d: some files were not de-identified (see the deid report), left out", study.index)
            continue
        paths = [target / str(d) for d in done]
        study.images, study.seg = paths[: len(study.images)], (paths[-1] if study.seg else None)
        kept.append(study)
    return kept


def _write_cases(
    studies: list[_Study], root: Path, name: str, classification: bool, progress: ProgressFn | None
) -> tuple[DatasetSpec, list[Case]]:
    """Move each study's images into ``root/images/<case>/`` (and its label map into ``root/masks``); the spec
    and the cases."""
    from medlens.io import read_image, write_image
    from medlens.io.dicom_seg import read_dicom_seg

    cases, class_names, dims, modality = [], None, None, "OT"
    labels = sorted({s.label for s in studies if s.label}) if classification else []
    for n, study in enumerate(studies):
        case_id = f"case_{n:05d}"
        folder = root / "images" / case_id
        folder.mkdir(parents=True)
        moved = [Path(shutil.copy2(p, folder / f"{i:05d}.dcm")) for i, p in enumerate(sorted(study.images))]
        header = pydicom.dcmread(moved[0], stop_before_pixels=True)
        modality = str(header.get("Modality", modality))
        patient = str(header.get("PatientID", "")) or case_id
        image = read_image(moved if len(moved) > 1 else moved[0])
        dims = dims or (2 if image.spatial_dims == 2 or image.spatial_shape[-1] == 1 else 3)
        if classification:
            image_path = f"images/{case_id}" if len(moved) > 1 else f"images/{case_id}/{moved[0].name}"
            cases.append(Case(case_id, patient, [image_path], str(labels.index(str(study.label)))))
        else:
            if study.seg is None:
                raise InputError(root, f"study {study.index}: no SEG")
            label_map, names = read_dicom_seg(study.seg, image, image.meta.get("source_files", moved))
            if class_names is None:
                class_names = names
            elif names != class_names:
                raise InputError(study.seg, f"segments {names[1:]} differ from the first study's {class_names[1:]}")
            from medlens.core.image import Image

            mask = root / "masks" / f"{case_id}.nii.gz"
            mask.parent.mkdir(exist_ok=True)
            write_image(Image(label_map[None], image.affine.copy(), "label"), mask)
            cases.append(Case(case_id, patient, [f"images/{case_id}"], f"masks/{case_id}.nii.gz"))
        report(progress, "writing cases", n + 1, len(studies))
    if classification:
        counts = Counter(c.target for c in cases)
        log.info("classes %s", {labels[int(k)]: v for k, v in sorted(counts.items())})
    spec = DatasetSpec(
        name=name,
        task="classification" if classification else "segmentation",
        spatial_dims=dims or 3,  # type: ignore[arg-type]
        modality=modality,
        channels=[modality],
        classes=labels if classification else (class_names or ["background"]),
    )
    if classification and len(labels) < 2:
        raise ConfigError("labels", f"the studies found carry {len(labels)} class(es); a classifier needs two")
    return spec, cases
