"""Volumes through the service on a real trained hippocampus segmenter: NIfTI, NRRD, MHA and a zipped DICOM series
answer with the mask ``bundle.predict`` gives."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from serving import Keys, app_client, make_keys, series_zip


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def client(hippo_run: Path, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with app_client(hippo_run / "run", tmp_path_factory.mktemp("home"), keys, "hippo") as c:
        yield c


def fetch_mask(client: Any, keys: Keys, body: dict[str, Any]) -> np.ndarray:
    answer = client.get(body["files"]["mask"], headers=keys.header())
    assert answer.status_code == 200
    return np.asanyarray(nib.Nifti1Image.from_bytes(gzip.decompress(answer.content)).dataobj)


@pytest.mark.parametrize("kind", ["nifti", "nrrd", "mha"])
def test_volume_formats_give_the_bundles_mask(
    client: Any, keys: Keys, hippo_run: Path, hippocampus_nifti: Path, tmp_path: Path, kind: str
) -> None:
    from medlens import load_bundle, read_image

    source = hippocampus_nifti
    if kind != "nifti":
        import SimpleITK as sitk

        source = tmp_path / f"case.{kind}"
        sitk.WriteImage(sitk.ReadImage(str(hippocampus_nifti)), str(source))
    answer = client.post("/v1/models/hippo/predict", headers=keys.header(), files={"file": ("v", source.read_bytes())})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    direct = load_bundle(hippo_run / "run").predict(hippocampus_nifti)
    assert body["volumes_ml"] == direct.volumes_ml and sum(direct.volumes_ml.values()) > 0
    mask = fetch_mask(client, keys, body)
    expected = direct.labels.array[0]
    if kind != "nifti":  # the mask is in the upload's own grid: compare in the world (RAS) frame
        mask = read_image(_saved(tmp_path, mask, body, client, keys)).reoriented().array[0]
        expected = direct.labels.reoriented().array[0]
    assert mask.shape == expected.shape and np.array_equal(mask, expected)
    assert set(body["files"]) >= {"mask", "overlay"}


def _saved(folder: Path, mask: np.ndarray, body: dict[str, Any], client: Any, keys: Keys) -> Path:
    path = folder / "mask.nii.gz"
    path.write_bytes(client.get(body["files"]["mask"], headers=keys.header()).content)
    return path


def test_a_zipped_dicom_series_is_one_volume(client: Any, keys: Keys, mr_crop: Path, hippo_run: Path) -> None:
    from medlens import load_bundle

    answer = client.post(
        "/v1/models/hippo/predict", headers=keys.header(), files={"file": ("s.zip", series_zip(mr_crop, "DOE^JOHN/"))}
    )
    assert answer.status_code == 200, answer.text
    direct = load_bundle(hippo_run / "run").predict(mr_crop)
    assert answer.json()["shape"] == list(direct.labels.spatial_shape)
    assert np.array_equal(fetch_mask(client, keys, answer.json()), direct.labels.array[0])


def test_a_picture_to_a_volume_model_is_422(client: Any, keys: Keys, real_data) -> None:  # type: ignore[no-untyped-def]
    jpeg = next(real_data("BCCD/JPEGImages").glob("*.jpg")).read_bytes()
    answer = client.post("/v1/models/hippo/predict", headers=keys.header(), files={"file": ("p.jpg", jpeg)})
    assert answer.status_code == 422 and "2D image" in answer.json()["detail"]
