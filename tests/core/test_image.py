"""Image geometry: ``reoriented`` to RAS agrees with nibabel's canonical reorientation, and keeps world points."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlens.core.image import Image


def test_reoriented_matches_nibabel_on_a_real_sagittal_series(mr_series_dir: Path) -> None:
    from medlens.io import read_image

    image = read_image(mr_series_dir)
    assert image.orientation != "RAS"  # a sagittal acquisition: the test would prove nothing otherwise
    ras = image.reoriented()
    assert ras.orientation == "RAS" and ras.array.shape[0] == image.array.shape[0]
    reference = nib.as_closest_canonical(nib.Nifti1Image(image.array[0], image.affine))
    np.testing.assert_array_equal(ras.array[0], np.asarray(reference.dataobj))
    np.testing.assert_allclose(ras.affine, reference.affine, atol=1e-6)
    # the same voxel sits at the same world point
    rng = np.random.default_rng(0)
    for index in rng.integers(0, np.array(image.spatial_shape), size=(20, 3)):
        world = image.affine @ np.append(index, 1.0)
        moved = np.rint(np.linalg.inv(ras.affine) @ world)[:3].astype(int)
        assert image.array[(0, *index)] == ras.array[(0, *moved)]


@pytest.mark.parametrize("codes", ["LPS", "PIR", "RAS"])
def test_reoriented_is_a_permutation_with_flips(codes: str) -> None:
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(1, 4, 5, 6)
    ras = Image(array, np.diag([1.0, 2.0, 3.0, 1.0]))
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes))
    other = Image(
        nib.orientations.apply_orientation(array[0], transform)[None],
        ras.affine @ inv_ornt_aff(transform, array.shape[1:]),
    )
    assert other.orientation == codes
    back = other.reoriented()
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, ras.affine, atol=1e-9)


def test_two_d_images_are_not_touched() -> None:
    picture = Image(np.zeros((1, 4, 5)), np.eye(3))
    assert picture.reoriented() is picture and picture.orientation == ""
