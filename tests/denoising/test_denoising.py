"""The denoising autoencoder: the noise model's statistics, training and applying in the images' own geometry,
the evaluation's JSON, refusal to overwrite, and a bad input skipped with its reason. Real PneumoniaMNIST images
and Hippocampus volumes, a few optimiser steps."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from conftest import write_npz_file
from medlens.cli.main import main
from medlens.core.errors import ConfigError, InputError
from medlens.data.importers import get_importer
from medlens.denoising.application import apply_denoiser
from medlens.denoising.evaluation import evaluate_denoiser
from medlens.denoising.noise import NoiseSpec, add_noise, parse_noise
from medlens.denoising.training import train_denoiser
from suite_support import build_msd

METHODS = {"noisy", "autoencoder", "nl_means", "tv"}


# ---- the noise model ------------------------------------------------------------------------------------------------
def test_poisson_variance_grows_with_intensity_as_the_photon_count_says() -> None:
    generator = torch.Generator().manual_seed(0)
    spec = NoiseSpec(poisson=50.0)
    for level in (0.2, 0.8):
        noisy = add_noise(torch.full((200_000,), level), spec, generator)
        assert float(noisy.mean()) == pytest.approx(level, rel=0.01)  # unbiased
        assert float(noisy.var()) == pytest.approx(level / 50.0, rel=0.03)  # variance x / N: 4x at 4x the signal


def test_gaussian_sigma_is_the_fraction_of_the_range_asked_and_noise_is_reproducible() -> None:
    clean = torch.rand(100_000, generator=torch.Generator().manual_seed(1))
    noisy = add_noise(clean, parse_noise("gaussian:0.05"), torch.Generator().manual_seed(2))
    assert float((noisy - clean).std()) == pytest.approx(0.05, rel=0.02)
    again = add_noise(clean, parse_noise("gaussian:0.05"), torch.Generator().manual_seed(2))
    assert torch.equal(noisy, again)


def test_mixed_noise_adds_both_variances() -> None:
    spec = parse_noise("gaussian:0.05,poisson:50")
    assert spec == NoiseSpec(gaussian=0.05, poisson=50.0) and str(spec) == "gaussian:0.05,poisson:50"
    noisy = add_noise(torch.full((200_000,), 0.5), spec, torch.Generator().manual_seed(3))
    assert float(noisy.var()) == pytest.approx(0.5 / 50 + 0.05**2, rel=0.03)


@pytest.mark.parametrize("text", ["", "gaussian", "gaussian:-1", "speckle:0.1", "poisson:x", "poisson:5,poisson:6"])
def test_bad_noise_is_refused_with_the_option_named(text: str) -> None:
    with pytest.raises(ConfigError, match="--noise"):
        parse_noise(text)


# ---- trained on real data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pneumonia(tmp_path_factory: pytest.TempPathFactory, medmnist_subset: Callable[..., dict]) -> Path:
    root = tmp_path_factory.mktemp("denoise_pneumonia")
    npz = write_npz_file(root / "src" / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist", 64, 8, 12))
    get_importer("medmnist")(npz, root / "dataset")
    return root / "dataset"


@pytest.fixture(scope="module")
def pneumonia_ae(pneumonia: Path) -> Path:
    """A U-Net trained 16 steps against heavy Gaussian noise (an easy case to beat the noisy input)."""
    out = pneumonia.parent / "ae"
    train_denoiser(pneumonia, out, "gaussian:0.2", budget_minutes=2, max_steps=16, learning_rate=3e-3)
    return out


@pytest.fixture(scope="module")
def hippocampus(tmp_path_factory: pytest.TempPathFactory, hippocampus_root: Path) -> Path:
    root = tmp_path_factory.mktemp("denoise_hippo")
    task = build_msd(hippocampus_root, root / "task", 2)
    get_importer("msd")(task, root / "dataset", val_fraction=0.0, test_fraction=0.5)
    return root / "dataset"


def test_evaluate_writes_the_exact_shape_and_the_autoencoder_beats_the_noisy_input(
    pneumonia: Path, pneumonia_ae: Path, tmp_path: Path
) -> None:
    result = evaluate_denoiser(pneumonia_ae, pneumonia, tmp_path / "eval", n_bootstrap=200)
    written = json.loads((tmp_path / "eval" / "denoise.json").read_text())
    assert written == result
    assert set(written["methods"]) == METHODS
    for scores in written["methods"].values():
        assert set(scores) == {"psnr", "ssim"}
        for entry in scores.values():
            assert {"value", "ci95"} <= set(entry)
            low, high = entry["ci95"]
            assert all(np.isfinite(v) for v in (entry["value"], low, high)) and low <= entry["value"] <= high
    methods = written["methods"]
    assert methods["autoencoder"]["psnr"]["value"] > methods["noisy"]["psnr"]["value"] + 1.0
    assert methods["autoencoder"]["ssim"]["value"] > methods["noisy"]["ssim"]["value"]
    assert written["comparisons"]["autoencoder_minus_noisy"]["psnr"]["ci95"][0] > 0
    assert written["cases"] == 12 and written["noise"] == "gaussian:0.2"
    latent = written["latent"]
    assert latent["compression_ratio"] == pytest.approx(latent["input_values"] / latent["bottleneck_values"])
    assert np.isfinite(latent["reconstruction_psnr"]["value"])
    assert written["bm3d"]["run"] is False and written["bm3d"]["reason"]
    assert PILImage.open(tmp_path / "eval" / "denoise.png").size[0] > 100


def test_apply_keeps_png_size_and_values_type_and_skips_a_bad_file(pneumonia_ae: Path, tmp_path: Path) -> None:
    images = sorted((pneumonia_ae.parent / "dataset" / "images").glob("*.png"))[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a picture")
    run = apply_denoiser(pneumonia_ae, [*images, bad], tmp_path / "out")
    assert len(run.written) == 2
    for source, name in run.written:
        before, after = PILImage.open(source), PILImage.open(tmp_path / "out" / name)
        assert after.size == before.size == (28, 28) and after.mode == before.mode
        assert name == Path(source).name  # the input's own name and format
    with open(tmp_path / "out" / "skipped.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["input"] for r in rows] == [str(bad)] and rows[0]["reason"]


def test_3d_train_and_apply_keep_the_nifti_affine_and_shape(hippocampus: Path, tmp_path: Path) -> None:
    ae = tmp_path / "ae3d"
    trained = train_denoiser(hippocampus, ae, "gaussian:0.05,poisson:50", max_steps=2)
    assert trained.info.spatial_dims == 3 and trained.info.training["steps"] == 2
    volume = next((hippocampus.parent / "task" / "imagesTr").glob("*.nii.gz"))
    moved = tmp_path / "moved.nii.gz"  # an oblique affine, to see it kept exactly
    source = nib.load(str(volume))
    affine = source.affine.copy()
    affine[:3, :3] = affine[:3, :3] @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    affine[:3, 3] = [12.5, -7.0, 3.25]
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj, dtype=np.float32), affine), str(moved))
    run = apply_denoiser(ae, [moved], tmp_path / "out")
    written = nib.load(str(tmp_path / "out" / run.written[0][1]))
    assert run.written[0][1] == "moved.nii.gz"
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    picture = tmp_path / "picture.png"
    PILImage.fromarray(np.zeros((20, 20), np.uint8)).save(picture)
    with pytest.raises(InputError, match="a 2D image; this denoiser takes 3D"):  # named, and nothing written
        apply_denoiser(ae, [picture], tmp_path / "pictures")
    assert not (tmp_path / "pictures").exists()


def test_every_command_refuses_an_existing_output_without_overwrite(
    pneumonia: Path, pneumonia_ae: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("a user's file")
    image = next((pneumonia / "images").glob("*.png"))
    for args in (
        ["denoise", "train", str(pneumonia), "--out", str(taken), "--max-steps", "1"],
        ["denoise", "apply", str(pneumonia_ae), str(image), "--out", str(taken)],
        ["denoise", "evaluate", str(pneumonia_ae), "--dataset", str(pneumonia), "--out", str(taken)],
    ):
        assert main(args) == 1
        assert "exists and is not empty" in capsys.readouterr().err
    assert (taken / "mine.txt").read_text() == "a user's file"


def test_a_dicom_file_comes_back_as_dicom_with_its_geometry(
    pneumonia_ae: Path, real_data: Callable[[str], Path], tmp_path: Path
) -> None:
    from medlens.io import read_image

    source = real_data("dicom/pydicom_testdata/CT_small.dcm")
    run = apply_denoiser(pneumonia_ae, [source], tmp_path / "out")
    assert run.written == [(str(source), "CT_small")]
    before, after = read_image(source), read_image(tmp_path / "out" / "CT_small")
    assert after.array.shape == before.array.shape
    np.testing.assert_allclose(after.affine, before.affine, atol=1e-3)
    assert after.meta["modality"] == "CT" and not np.array_equal(after.array, before.array)


def test_cli_autoencoder_model_limit_bm3d_and_overwrite(pneumonia: Path, pneumonia_ae: Path, tmp_path: Path) -> None:
    ae, evaluation, out = tmp_path / "ae", tmp_path / "eval", tmp_path / "out"
    assert main(["denoise", "train", str(pneumonia), "-o", str(ae), "--model", "autoencoder", "--max-steps", "2"]) == 0
    assert json.loads((ae / "denoiser.json").read_text())["model"] == "autoencoder"
    args = ["denoise", "evaluate", str(ae), "--dataset", str(pneumonia), "-o", str(evaluation)]
    assert main([*args, "--limit", "2", "--bm3d"]) == 0
    result = json.loads((evaluation / "denoise.json").read_text())
    assert result["cases"] == 2 and result["bm3d"]["run"] is True and set(result["methods"]) == METHODS | {"bm3d"}
    latent = result["latent"]  # a true bottleneck: fewer values than the input, and no note about skips
    assert latent["compression_ratio"] > 1 and "note" not in latent
    image = str(next((pneumonia / "images").glob("*.png")))
    assert main(["denoise", "apply", str(pneumonia_ae), image, "-o", str(out)]) == 0
    assert main(["denoise", "apply", str(pneumonia_ae), image, "-o", str(out)]) == 1  # refused
    assert main(["denoise", "apply", str(pneumonia_ae), image, "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".medlens", "denoised.csv", Path(image).name]
