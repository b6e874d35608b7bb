"""``medlens pretrain`` end to end on tiny real data, and a training run started from its encoder (``model.init``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medlens.cli.main import main
from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import MARKER
from medlens.workflows.pretraining import pretrain

TINY = ["--budget", "2s", "--epochs", "1", "--batch-size", "8"]


def _png_folder(npz: Path, folder: Path, n: int = 12) -> Path:
    """``n`` real PneumoniaMNIST images as PNG files in nested folders (their classes are not used)."""
    arrays = np.load(npz)
    for i, image in enumerate(arrays["test_images"][:n]):
        sub = folder / f"patient{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i}.png")
    return folder


def test_pretrain_on_a_dataset_and_a_folder_writes_the_folder(
    small_pneumonia_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medlens.data.importers import get_importer

    dataset = get_importer("medmnist")(small_pneumonia_npz, tmp_path / "ds", label_fraction=0.25, seed=0)
    folder = _png_folder(small_pneumonia_npz, tmp_path / "pngs")
    out = tmp_path / "pre"
    assert main(["-q", "pretrain", str(dataset.root), str(folder), "--out", str(out), *TINY]) == 0
    record = yaml.safe_load((out / "pretrain.yaml").read_text())
    assert record["method"] == "simclr" and record["spatial_dims"] == 2 and record["channels"] == 1
    assert record["backbone"]["name"].startswith("monai_resnet") and record["input_size"] == [28, 28]
    # the dataset gives its 40 training images (10 labelled, 30 unlabeled), never validation or test
    assert record["images"]["per_input"] == {str(dataset.root): 40, str(folder): 12}
    assert 1 <= record["steps"] <= 52 // 8 and record["epochs"] > 0 and record["seconds"] > 0  # budget or 1 epoch
    assert record["intensity"]["normalization"] in ("zscore", "minmax", "none")
    assert (out / "encoder.safetensors").is_file() and (out / "loss.png").stat().st_size > 1000
    assert (out / MARKER).is_file()
    assert "model.init" in capsys.readouterr().out
    # an existing output is refused without --overwrite, and replaced with it
    assert main(["-q", "pretrain", str(folder), "--out", str(out), *TINY]) != 0
    assert "--overwrite" in capsys.readouterr().err
    flags = ["--overwrite", "--method", "byol", "--backbone", "monai_resnet10", "--lr", "0.002", "--seed", "3"]
    assert main(["-q", "pretrain", str(folder), "-o", str(out), *TINY, *flags]) == 0
    record = yaml.safe_load((out / "pretrain.yaml").read_text())
    assert (record["method"], record["backbone"]["name"], record["lr"], record["seed"]) == (
        "byol",
        "monai_resnet10",
        0.002,
        3,
    )


def test_pretrain_refuses_mixed_dimensions_and_empty_inputs(
    small_pneumonia_npz: Path, small_adrenal_npz: Path, tmp_path: Path
) -> None:
    from medlens.data.importers import get_importer

    volumes = get_importer("medmnist")(small_adrenal_npz, tmp_path / "adrenal")
    folder = _png_folder(small_pneumonia_npz, tmp_path / "pngs", n=4)
    with pytest.raises(InputError, match="mix 2D and 3D"):
        pretrain([volumes.root, folder], tmp_path / "pre", budget_minutes=0.01)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty.*no image"):
        pretrain([tmp_path / "empty"], tmp_path / "pre", budget_minutes=0.01)
    assert not (tmp_path / "pre").exists()


@pytest.mark.integration
def test_training_from_a_pretrained_encoder_reports_what_it_loaded(
    small_pneumonia_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medlens.tasks.classification import ClassificationTask

    monkeypatch.setattr(ClassificationTask, "explain_images", 0)  # not what this test is about; saves seconds
    assert main(["-q", "import", "medmnist", str(small_pneumonia_npz), "--out", str(tmp_path / "ds")]) == 0
    assert main(["-q", "plan", str(tmp_path / "ds"), "--set", 'model.kwargs={"widen_factor": 0.25}']) == 0
    assert main(["-q", "pretrain", str(tmp_path / "ds"), "--out", str(tmp_path / "pre"), *TINY]) == 0
    run = tmp_path / "run"
    args = ["-q", "train", str(tmp_path / "ds"), "--out", str(run), "--set", "train.max_epochs=1"]
    assert main([*args, "--set", "train.budget_minutes=null", "--set", f"model.init={tmp_path / 'pre'}"]) == 0
    listed = json.loads((run / "init_weights.json").read_text())
    assert listed["loaded"] == len(listed["loaded_tensors"]) > 50 and listed["skipped"] == 0
    assert any(k.startswith("fc.") for k in listed["kept_tensors"])  # the head is the task's own
    assert json.loads((run / "train_summary.json").read_text())["init"]["loaded"] == listed["loaded"]
    card = (run / "bundle" / "model_card.md").read_text()
    assert f"starting from the pretrained encoder {tmp_path / 'pre'} ({listed['loaded']} tensors loaded" in card
    # a 3D encoder is refused for this 2D task before any training, naming its pretrain.yaml
    (tmp_path / "pre3d").mkdir()
    (tmp_path / "pre3d" / "encoder.safetensors").write_bytes((tmp_path / "pre" / "encoder.safetensors").read_bytes())
    (tmp_path / "pre3d" / "pretrain.yaml").write_text("spatial_dims: 3\nchannels: 1\n")
    args = ["-q", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "run3d")]
    assert main([*args, "--set", f"model.init={tmp_path / 'pre3d'}"]) != 0
    assert not (tmp_path / "run3d" / "seed_0").exists()


def test_mae_pretrains_a_3d_vit_that_loads_into_the_classifier(small_adrenal_npz: Path, tmp_path: Path) -> None:
    """``pretrain --method mae --backbone monai_vit`` on real AdrenalMNIST3D volumes: pretrain.yaml records the
    masking, and every encoder tensor loads into the 3D monai_vit classifier; a ResNet is refused in one line."""
    import torch
    from safetensors.torch import load_file

    from medlens.data.importers import get_importer
    from medlens.models import create_model
    from medlens.models.checkpoints import load_init

    dataset = get_importer("medmnist")(small_adrenal_npz, tmp_path / "ds", label_fraction=0.1, seed=0)
    out = tmp_path / "pre"
    args = ["-q", "pretrain", str(dataset.root), "--out", str(out), "--method", "mae", "--backbone", "monai_vit"]
    assert main([*args, *TINY]) == 0
    record = yaml.safe_load((out / "pretrain.yaml").read_text())
    assert record["method"] == "mae" and record["spatial_dims"] == 3 and record["input_size"] == [28, 28, 28]
    assert record["augmentation"]["mask_ratio"] == 0.75 and record["augmentation"]["views"] == 1
    assert record["images"]["total"] == 40 and record["steps"] >= 1  # 4 labelled + 36 unlabeled training volumes
    net = create_model("monai_vit", output="image", spatial_dims=3, in_channels=1, num_classes=2, input_size=[28] * 3)
    report = load_init(net, out, spatial_dims=3, channels=1)
    state = load_file(str(out / "encoder.safetensors"))
    assert (
        not report.skipped
        and len(report.loaded) == len(state)
        and report.kept
        == [
            "classification_head.weight",
            "classification_head.bias",
        ]
    )
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ConfigError, match=r"--method.*mae needs a ViT backbone.*monai_resnet18 has none") as caught:
        pretrain([dataset.root], tmp_path / "r", method="mae", budget_minutes=0.01)  # the plan's ResNet
    assert "\n" not in str(caught.value) and not (tmp_path / "r").exists()
