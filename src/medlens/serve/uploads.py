"""What a caller uploads, made into an :class:`~medlens.core.image.Image` with nothing but pixels and geometry.

The upload is copied to a private temporary folder while its SHA-256 is computed, its kind is told from its first
bytes (never from the caller's file name, which is not used, stored or logged: names of medical files often carry
patient names), a zip of a DICOM series is unpacked under limits, and ``medlens.io.read_image`` reads it. The image
keeps only its pixels, geometry and the few header values that change how pixels look (modality, rescale, window,
photometry); patient, study and series identifiers and every other header value are dropped before anything
else sees the image.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medlens.core.errors import MedlensError
from medlens.core.image import Image
from medlens.serve.errors import ServiceError, from_medlens

KINDS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm", "nifti": ".nii", "nifti-gz": ".nii.gz",
         "nrrd": ".nrrd", "mha": ".mha", "zip": ".zip"}  # fmt: skip
ACCEPTED = "PNG, JPEG, TIFF, a DICOM file, NIfTI (.nii, .nii.gz), NRRD, MHA, or a .zip of a DICOM series"
# header values that change how pixels look; everything else a reader found (descriptions, UIDs, file names) goes
SAFE_META = {"source_format", "modality", "photometric_interpretation", "stored_photometric_interpretation",
             "bits_stored", "rescale_slope", "rescale_intercept", "rescale_type", "window_center", "window_width",
             "n_frames", "n_slices", "flags"}  # fmt: skip
ZIP_MAX_MEMBERS = 5000
ZIP_MAX_RATIO = 200  # a member unpacking to more than 200x its packed size is a zip bomb
UNPACKED = 4  # a zip may unpack to 4x the upload limit
PIXELS = 8  # a volume's header may declare 8x the upload limit of pixels
CHUNK = 1 << 20


@dataclass(frozen=True)
class Upload:
    """A received upload: where it is, what it is, its SHA-256 and size."""

    path: Path
    kind: str
    sha256: str
    size: int


def receive(stream: BinaryIO, folder: Path, limit: int) -> Upload:
    """Copy ``stream`` into ``folder`` (at most ``limit`` bytes), hash it and tell its kind (``""`` when unknown:
    see :func:`require_kind`).

    Raises:
        ServiceError: 413 past the limit.
    """
    digest, size = hashlib.sha256(), 0
    raw = folder / "upload.bin"
    with open(raw, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ServiceError(413, f"file: larger than the limit of {limit / 2**20:g} MB (--max-upload-mb)")
            digest.update(chunk)
            out.write(chunk)
    kind = sniff(raw) if size else None
    path = raw.rename(folder / f"upload{KINDS[kind]}") if kind else raw
    return Upload(path, kind or "", digest.hexdigest(), size)


def require_kind(upload: Upload) -> None:
    """Raise unless the upload is of a kind the service reads.

    Raises:
        ServiceError: 400 for an empty upload, 415 for an unknown kind.
    """
    if upload.size == 0:
        raise ServiceError(400, "file: the upload is empty")
    if not upload.kind:
        raise ServiceError(415, f"file: not an image this service reads (it takes {ACCEPTED})")


def sniff(path: Path) -> str | None:
    """The kind of the file at ``path`` from its first bytes, or None."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if head[128:132] == b"DICM":  # first: a DICOM preamble may itself look like a TIFF header
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if _is_nifti(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                return "nifti-gz" if _is_nifti(handle.read(544)) else None
        except (OSError, EOFError):
            return None
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.lstrip().startswith((b"ObjectType", b"NDims")):  # MetaImage: key = value lines, then the pixels
        with open(path, "rb") as handle:
            if b"ElementDataFile" in handle.read(1 << 16):
                return "mha"
    return None


def nifti_bytes(path: Path, kind: str) -> int:
    """The size of the pixels a NIfTI-1 header declares (0 when it cannot tell), read before the pixels are."""
    opener = gzip.open if kind == "nifti-gz" else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(348)
    except (OSError, EOFError):
        return 0
    if len(head) < 348 or head[344:348] not in (b"n+1\x00", b"ni1\x00"):
        return 0
    order = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
    dims = struct.unpack(f"{order}8h", head[40:56])
    bitpix = struct.unpack(f"{order}h", head[72:74])[0]
    if not 1 <= dims[0] <= 7:
        return 0
    voxels = 1
    for n in dims[1 : dims[0] + 1]:
        voxels *= max(int(n), 1)
    return voxels * max(int(bitpix), 8) // 8


def _is_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    return len(head) >= 12 and head[4:8] == b"n+2\x00"


def unpack_zip(path: Path, folder: Path, limit: int) -> Path:
    """Unpack the files of a zip into ``folder`` under new names (``0000.dcm``, ...), within limits.

    Member names are not kept (they may name the patient); members that would land outside the folder, links,
    more than :data:`ZIP_MAX_MEMBERS` files, more than ``limit`` bytes unpacked, or a member unpacking to more
    than :data:`ZIP_MAX_RATIO` times its packed size are refused.

    Raises:
        ServiceError: 400 for a broken zip or an unsafe member, 413 past a limit.
    """
    folder.mkdir()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ServiceError(400, f"file: not a readable zip ({exc})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > ZIP_MAX_MEMBERS:
            raise ServiceError(413, f"file: the zip holds {len(members)} files, more than {ZIP_MAX_MEMBERS}")
        if not members:
            raise ServiceError(400, "file: the zip holds no files")
        total = 0
        for i, member in enumerate(members):
            name = member.filename.replace("\\", "/")
            if name.startswith("/") or ".." in name.split("/") or ":" in name.split("/")[0]:
                raise ServiceError(400, f"file: zip member {i + 1} has a path outside the archive")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise ServiceError(400, f"file: zip member {i + 1} is a symbolic link")
            if name.rsplit("/", 1)[-1].startswith(".") or name.startswith("__MACOSX/"):
                continue  # hidden files and macOS resource forks
            if member.file_size > ZIP_MAX_RATIO * max(member.compress_size, 1):
                raise ServiceError(413, f"file: zip member {i + 1} unpacks to {member.file_size} bytes, a zip bomb")
            target = folder / f"{i:05d}.dcm"
            try:
                with archive.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        total += len(chunk)
                        if total > limit:
                            raise ServiceError(413, f"file: the zip unpacks to more than {limit / 2**20:g} MB")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ServiceError(400, f"file: zip member {i + 1} cannot be unpacked ({type(exc).__name__})") from None
    return folder


def read_upload(upload: Upload, limit: int) -> Image:
    """Read ``upload`` (a zip is unpacked first) into an image holding only pixels and geometry.

    Args:
        upload: what :func:`receive` kept.
        limit: the upload limit in bytes; a zip may unpack to :data:`UNPACKED` times it, a NIfTI header may declare
            :data:`PIXELS` times it.

    Raises:
        ServiceError: 400 when medlens cannot read it (the temporary path is not shown), 413 for a zip or a volume
            that would unpack past the limits, 415 for an unknown kind.
    """
    from medlens.io import read_image

    require_kind(upload)
    if upload.kind in ("nifti", "nifti-gz") and nifti_bytes(upload.path, upload.kind) > PIXELS * limit:
        raise ServiceError(413, f"file: the volume's header declares more than {PIXELS * limit / 2**20:g} MB of pixels")
    source = upload.path
    if upload.kind == "zip":
        source = unpack_zip(upload.path, upload.path.parent / "series", UNPACKED * limit)
    try:
        image = read_image(source)
    except MedlensError as exc:
        raise from_medlens(exc, 400, hide=str(source.parent)) from None
    except (ValueError, OSError, RuntimeError, MemoryError) as exc:  # a reader library's own failure
        raise ServiceError(400, f"upload: unreadable {upload.kind} ({type(exc).__name__})") from None
    return pixels_only(image, f"sha256:{upload.sha256}")


def pixels_only(image: Image, source: str) -> Image:
    """``image`` with its identifiers, warnings and every non-rendering header value dropped; named ``source``."""
    meta = {k: v for k, v in image.meta.items() if k in SAFE_META}
    meta["source"] = source
    return Image(image.array, image.affine, image.kind, meta, {})
