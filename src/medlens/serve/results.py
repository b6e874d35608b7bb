"""Where answers are kept: a folder per call that wrote files (mask, overlay, explanation, report), served back
under ``/v1/results/{id}/{file}``, and the NIfTI renditions the web viewer draws.

Only what ``Prediction.save`` writes is kept (its JSON names the upload by SHA-256, never by file name), plus, when
the viewer asks, the input's pixels and the label map as NIfTI files in one geometry. No header of the upload is
kept.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.image import Image
from medlens.core.outputs import strict_json

if TYPE_CHECKING:
    from medlens.core.prediction import Prediction
    from medlens.models.bundle import Bundle
    from medlens.serve.extras import Extras

log = logging.getLogger(__name__)

STEM = "prediction"
OVERLAY_ROLES = ("mask", "heatmap", "explanation")  # files drawn over the image in the viewer, when NIfTI or PNG


def publish(
    prediction: Prediction,
    image: Image,
    root: Path,
    result_id: str,
    viewer: bool = False,
    bundle: Bundle | None = None,
    extras: Extras | None = None,
) -> dict[str, Any]:
    """Save ``prediction`` (and with ``bundle``, the ``extras`` asked for) under ``root/result_id`` and return its
    ``to_dict()`` with links to its files.

    The folder is kept only when ``save`` wrote more than the JSON, or ``viewer`` asked for renditions.
    """
    from medlens.serve.extras import save_options

    tmp = Path(tempfile.mkdtemp(prefix=f".{result_id}.", dir=root))
    try:
        files = prediction.save(tmp, STEM, save_options())
        if bundle is not None and extras is not None:
            files |= extras.write(bundle, prediction, image, tmp, STEM, files)
        files.pop("json", None)
        if viewer:
            files.update(renditions(image, tmp, files))
        if files:
            os.chmod(tmp, 0o755)
            tmp.rename(root / result_id)
    finally:  # the folder this call made (mkdtemp above); gone already when it was kept as root/result_id
        if tmp.exists():
            shutil.rmtree(tmp)
    out = prediction.to_dict()
    if files:
        out["files"] = {role: f"/v1/results/{result_id}/{name}" for role, name in files.items()}
    return strict_json(out)


def renditions(image: Image, folder: Path, files: dict[str, str]) -> dict[str, str]:
    """NIfTI files the viewer (NiiVue) draws: the input, and each overlay file, in one geometry.

    A 2D picture becomes a one-slice volume shown upright (rows run down the screen); a volume keeps its own
    affine, so its mask (written in the input's geometry) lies on it exactly.
    """
    from medlens.io import read_image

    made = {"viewer_image": write_rendition(image, folder / "viewer_image.nii.gz").name}
    for role in OVERLAY_ROLES:
        if role in files and files[role].endswith((".nii.gz", ".nii", ".png")):
            overlay = read_image(folder / files[role])
            made[f"viewer_{role}"] = write_rendition(
                overlay, folder / f"viewer_{role}.nii.gz", label=role == "mask"
            ).name
    return made


def write_rendition(image: Image, path: Path, label: bool = False) -> Path:
    """Write ``image`` as a NIfTI the viewer shows as the user sees the picture (RGB pictures stay in colour)."""
    import nibabel as nib

    array = image.array
    if image.spatial_dims == 2:
        spacing = image.spacing  # (rows, columns)
        array = array[:, ::-1, :].transpose(0, 2, 1)[..., None]  # (C, columns, rows from the bottom, 1)
        affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
    else:
        affine = image.affine
    if label:
        data: np.ndarray = array[0].astype(np.uint8)
    elif array.shape[0] in (3, 4):
        rgb = np.clip(array[:3], 0, 255).astype(np.uint8)
        data = np.empty(rgb.shape[1:], dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        data["R"], data["G"], data["B"] = rgb[0], rgb[1], rgb[2]
    else:
        data = array.mean(axis=0).astype(np.float32) if array.shape[0] > 1 else array[0].astype(np.float32)
    nii = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    nib.save(nii, str(path))
    return path
