"""Smaller models from trained runs, end to end on real data: ``distill`` (a student that tracks its teacher
ensemble), ``prune`` (fewer parameters, still a working bundle) and ``export --quantize int8`` (the quantisation
record, an int8 graph that agrees with fp32, and a refusal that leaves nothing behind), for classification and
segmentation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from medlens.cli.main import main
from medlens.core.errors import ConfigError
from medlens.tasks.base import get_task, load_bundle


def _parameters(bundle: object) -> int:
    return sum(p.numel() for net in bundle.networks() for p in net.parameters())  # type: ignore[attr-defined]


def _test_probabilities(bundle: object, work: Path) -> np.ndarray:
    from medlens.data.dataset import load_dataset
    from medlens.training.images import case_images

    data = load_dataset(work / "ds")
    predictions = bundle.predict_many(case_images(data, data.split("test")))  # type: ignore[attr-defined]
    return np.array([p.probabilities["pneumonia"] for p in predictions])


def test_distill_writes_a_smaller_student_that_tracks_its_teacher(
    pneumonia_run: Path, tmp_path: Path, real_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The 2-seed teacher into a default student with >= 3x fewer FLOPs, with 6 unlabeled real images from a folder;
    the student's test probabilities rank the cases as the teacher's do, and the card names the teacher."""
    from PIL import Image as PILImage

    raw = np.load(real_data("medmnist/pneumoniamnist.npz"))
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for i, pixels in enumerate(raw["train_images"][1000:1006]):  # not among the run's 80 training images
        PILImage.fromarray(pixels).save(unlabeled / f"u{i}.png")
    out = tmp_path / "small"
    args = ["distill", str(pneumonia_run / "run"), "--out", str(out), "--unlabeled", str(unlabeled), "--budget", "1m",
            "--set", "train.max_epochs=4"]  # fmt: skip
    assert main(["-q", *args]) == 0
    teacher, student = load_bundle(pneumonia_run / "run"), load_bundle(out)
    made = student.info["made_from"]
    assert made["method"] == "distillation" and made["unlabeled_images"] == 6 and made["teacher_members"] == 2
    assert made["flops_ratio"] >= 3 and made["student_gflops"] * 3 <= made["teacher_gflops"]
    assert _parameters(student) < _parameters(teacher) and len(student.members) == 1
    assert "Distilled from run (2-member" in (out / "bundle" / "model_card.md").read_text()
    want, got = _test_probabilities(teacher, pneumonia_run), _test_probabilities(student, pneumonia_run)
    assert spearmanr(want, got).statistic > 0.5  # an untrained student ranks the 40 test cases at random (about 0)
    capsys.readouterr()
    assert main(args) == 1 and "not empty" in capsys.readouterr().err  # no overwrite without --overwrite
    short = ["-o" if a == "--out" else a for a in args]  # -o is --out
    assert main(["-q", *short, "--overwrite", "--student", "monai_resnet10", "--set", "model.kwargs.widen_factor=0.125",
                 "--set", "train.max_epochs=1", "--temperature", "2", "--soft-weight", "0.5"]) == 0  # fmt: skip
    assert load_bundle(out).info["made_from"]["temperature"] == 2
    assert load_bundle(out).info["made_from"]["soft_weight"] == 0.5
    chosen = load_bundle(out).plan.model
    assert chosen.name == "monai_resnet10" and chosen.kwargs["widen_factor"] == 0.125
    assert chosen.kwargs["stem_stride"] == 1  # the teacher's stem, kept


NO_EXPLAIN = ["--set", "train.explain_images=0"]


@pytest.mark.integration
def test_distill_uses_the_datasets_unlabeled_split_and_counts_it(
    small_pneumonia_npz: Path, tmp_path: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A teacher trained on half the labels (import --label-fraction 0.5): distill adds the 20 training images kept
    without labels to the 3 --unlabeled ones by default, says how many of each, and leaves them out when told."""
    from PIL import Image as PILImage

    from medlens.data.dataset import load_dataset

    ds, run = tmp_path / "ds", tmp_path / "run"
    assert (
        main(["-q", "import", "medmnist", str(small_pneumonia_npz), "--out", str(ds), "--label-fraction", "0.5"]) == 0
    )
    assert (len(load_dataset(ds).split("train")), len(load_dataset(ds).unlabeled())) == (20, 20)
    assert main(["-q", "train", str(ds), "--out", str(run), *tiny, "--set", "train.max_epochs=1", *NO_EXPLAIN]) == 0
    folder = tmp_path / "more"
    folder.mkdir()
    for i, pixels in enumerate(np.load(small_pneumonia_npz)["test_images"][:3]):
        PILImage.fromarray(pixels).save(folder / f"u{i}.png")
    out = tmp_path / "small"
    args = ["distill", str(run), "--out", str(out), "--unlabeled", str(folder), "--student", "monai_resnet10",
            "--set", "model.kwargs.widen_factor=0.125", "--set", "train.max_epochs=1", "--budget", "1m",
            *NO_EXPLAIN]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    made = load_bundle(out).info["made_from"]
    assert (made["labelled_images"], made["unlabeled_from_dataset"], made["unlabeled_from_inputs"]) == (20, 20, 3)
    assert made["unlabeled_images"] == 23 and "(20 labelled, 23 unlabeled)" in made["loss"]
    said = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert "20 labelled and 23 unlabeled images (20 from the dataset's unlabeled split, 3 from --unlabeled)" in said
    assert main(["-q", *args, "--overwrite", "--no-dataset-unlabeled"]) == 0
    made = load_bundle(out).info["made_from"]
    assert (made["unlabeled_from_dataset"], made["unlabeled_images"]) == (0, 3)
    assert main(["-q", *[a for a in args if a != "--unlabeled" and a != str(folder)], "--overwrite",
                 "--dataset-unlabeled"]) == 0  # fmt: skip
    made = load_bundle(out).info["made_from"]
    assert (made["unlabeled_from_dataset"], made["unlabeled_images"]) == (20, 20)


def test_int8_export_records_the_quantization_and_agrees_with_fp32(pneumonia_run: Path, tmp_path: Path) -> None:
    """export --quantize int8: the record's fp32 AUC is scikit-learn's on the bundle's own validation predictions,
    and the int8 graph's probabilities stay near the fp32 graph's on real test images."""
    import onnxruntime as ort

    from medlens.data.dataset import load_dataset
    from medlens.training.images import case_images, read_input

    out = tmp_path / "onnx"
    assert main(["-q", "export", str(pneumonia_run / "run"), "--out", str(out), "--quantize", "int8"]) == 0
    q = json.loads((out / "export.json").read_text())["quantization"]
    assert q["metric"] == "auc" and q["file"] == "model_int8.onnx" and q["throughput_ratio"] > 0
    assert q["fp32"] - q["int8"] <= q["max_drop"] == 0.01 and not q["forced"]
    assert q["int8_bytes"] < q["fp32_bytes"] / 2  # int8 weights: a quarter of the bytes, plus the graph
    bundle = load_bundle(pneumonia_run / "run")
    data = load_dataset(pneumonia_run / "ds")
    val = data.split("val")
    truth = [data.class_index(c) for c in val]
    mine = [p.probabilities["pneumonia"] for p in bundle.predict_many(case_images(data, val))]
    assert q["fp32"] == pytest.approx(roc_auc_score(truth, mine), abs=1e-4)
    x = np.stack([read_input(data, c, bundle.plan.data) for c in data.split("test")]).astype(np.float32)
    runs = [ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"]) for f in ("model.onnx", q["file"])]
    fp32, int8 = (s.run(None, {"image": x})[0] for s in runs)
    assert int8.shape == fp32.shape == (40, 2) and np.abs(int8 - fp32).max() < 0.05


def test_an_int8_graph_slower_than_fp32_is_said_to_be(
    pneumonia_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where int8 loses on speed (small layers), export says to deploy the fp32 graph; the timing is made so."""
    import itertools

    import medlens.workflows.quantization as quantization

    speeds = itertools.cycle([10.0, 5.0])  # the order export times them: fp32, then each candidate and fp32 again
    monkeypatch.setattr(quantization, "images_per_second", lambda run, inputs: next(speeds))
    out = tmp_path / "onnx"
    assert main(["export", str(pneumonia_run / "run"), "--out", str(out), "--quantize", "int8"]) == 0
    assert json.loads((out / "export.json").read_text())["quantization"]["throughput_ratio"] == 0.5
    err = " ".join(capsys.readouterr().err.split())
    assert "the int8 graph is slower than fp32 on this machine (0.50x)" in err and "model.onnx" in err


def test_an_int8_graph_that_loses_too_much_is_refused_and_nothing_is_written(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A negative tolerance cannot be met (int8 would have to gain AUC): the export fails, the folder never appears,
    and no partial folder is left beside it."""
    out = tmp_path / "exports" / "refused"
    args = ["export", str(pneumonia_run / "run"), "--out", str(out), "--quantize", "int8", "--max-drop", "-1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "tolerance -1" in err and str(out) in err and "nothing written" in err
    assert not out.exists() and not list((tmp_path / "exports").iterdir())
    assert main(["-q", *args, "--force"]) == 0  # told to: written, and the record says so
    assert json.loads((out / "export.json").read_text())["quantization"]["forced"] is True


def test_int8_segmentation_export_scores_dice_as_pytorch_does(hippo_run: Path, tmp_path: Path) -> None:
    """Hippocampus: the record's fp32 Dice is the Dice of the exported PyTorch module on the same validation case
    (MONAI's sliding window, network grid), and the int8 graph's patch probabilities stay near fp32's."""
    import onnxruntime as ort
    from monai.inferers import sliding_window_inference

    from medlens.data.dataset import load_dataset
    from medlens.tasks.segmentation.metrics import dice_per_class
    from medlens.tasks.segmentation.training import PreparedCases

    out = tmp_path / "onnx"
    args = ["-q", "export", str(hippo_run / "run"), "--out", str(out), "--quantize", "int8", "--max-drop", "1"]
    assert main(args) == 0
    q = json.loads((out / "export.json").read_text())["quantization"]
    assert q["metric"] == "dice" and 0 <= q["int8"] <= 1 and q["throughput_ratio"] > 0
    bundle = load_bundle(hippo_run / "run")
    data = load_dataset(hippo_run / "ds")
    graph, seg = bundle.task.export_graph(bundle), bundle.plan.segmentation  # type: ignore[attr-defined]
    dice = []
    for case in data.split("val"):
        prepared = PreparedCases(data, bundle.plan, [], None).read(case)  # type: ignore[arg-type]
        with torch.no_grad():  # PyTorch's own graph module (probabilities per window) in MONAI's sliding window
            pred = sliding_window_inference(
                torch.from_numpy(prepared["image"])[None], bundle.plan.data.input_size, seg.sw_batch_size,
                graph.module.eval(), overlap=seg.sw_overlap, mode=seg.sw_mode,
            )[0]  # fmt: skip
        dice.append(dice_per_class(pred.argmax(0).numpy(), prepared["label"][0], len(bundle.class_names)))
    assert q["fp32"] == pytest.approx(float(np.nanmean(np.stack(dice))), abs=1e-3)
    patch = np.random.default_rng(0).normal(size=(1, 1, *bundle.plan.data.input_size)).astype(np.float32)
    runs = [ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"]) for f in ("model.onnx", q["file"])]
    fp32, int8 = (s.run(None, {"patch": patch})[0] for s in runs)
    assert int8.shape == fp32.shape and float(np.abs(int8 - fp32).mean()) < 0.05


def test_prune_removes_channels_and_the_bundle_still_predicts(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half the channels of each layer out: about a quarter of the parameters left; the pruned bundle loads from its
    safetensors, predicts, exports, and tracks the unpruned model."""
    out = tmp_path / "pruned"
    args = ["prune", str(pneumonia_run / "run"), "--out", str(out), "--ratio", "0.5", "--finetune-budget", "1m",
            "--set", "train.max_epochs=1"]  # fmt: skip
    assert main(["-q", *args]) == 0
    original, pruned = load_bundle(pneumonia_run / "run"), load_bundle(out)
    made = pruned.info["made_from"]
    assert pruned.info["pruned"] is True and made["parameters_after"] == _parameters(pruned)
    assert _parameters(pruned) < 0.4 * _parameters(original) and len(pruned.members) == 2
    probabilities = _test_probabilities(pruned, pneumonia_run)
    assert probabilities.shape == (40,) and np.isfinite(probabilities).all()
    assert spearmanr(probabilities, _test_probabilities(original, pneumonia_run)).statistic > 0.3
    assert main(["-q", "export", str(out), "--out", str(tmp_path / "onnx")]) == 0
    capsys.readouterr()
    assert main(args) == 1 and "not empty" in capsys.readouterr().err


def test_pruned_shapes_are_rebuilt_from_the_weights_alone() -> None:
    """fit_shapes turns the plan's network into the pruned one: same outputs, from a plain state dict."""
    from medlens.models import create_model
    from medlens.models.pruning import fit_shapes, prune_network

    def build() -> torch.nn.Module:
        return create_model("monai_resnet10", output="image", spatial_dims=2, in_channels=1, num_classes=3,
                            input_size=[28, 28], widen_factor=0.25).eval()  # fmt: skip

    pruned = prune_network(build(), [1, 28, 28], 0.5, 3).eval()
    state = {k: v.clone() for k, v in pruned.state_dict().items()}
    rebuilt = fit_shapes(build(), state)
    rebuilt.load_state_dict(state)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), pruned(x), atol=1e-5)
    with pytest.raises(RuntimeError):
        build().load_state_dict(state)  # without fitting, the weights do not fit (a bundle refuses them)


def test_dynunet_with_deep_supervision_prunes_and_rebuilds() -> None:
    """DynUNet (in-place activations, deep-supervision heads that only run in training) prunes: the heads' inputs
    follow the decoder, both modes run, and the pruned network is rebuilt from its weights alone."""
    from medlens.models import create_model
    from medlens.models.pruning import fit_shapes, parameter_count, prune_network

    def build() -> torch.nn.Module:
        return create_model("dynunet", output="pixel", spatial_dims=3, in_channels=1, num_classes=3,
                            input_size=[32, 32, 32], deep_supervision=True, deep_supervision_heads=2)  # fmt: skip

    net = build()
    pruned = prune_network(net, [1, 32, 32, 32], 0.5, 3)
    assert parameter_count(pruned) < 0.3 * parameter_count(net)
    heads = [m for n, m in pruned.named_modules() if n.startswith("deep_supervision_heads") and hasattr(m, "weight")]
    ups = [m for n, m in pruned.named_modules() if n.endswith("conv_block.conv2.conv")]
    assert heads and {h.in_channels for h in heads} <= {u.out_channels for u in ups}
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert pruned.train()(x).shape == (2, 3, 3, 32, 32, 32)  # the output and two heads
        out = pruned.eval()(x)
    assert out.shape == (2, 3, 32, 32, 32)
    state = {k: v.clone() for k, v in pruned.state_dict().items()}
    rebuilt = fit_shapes(build(), state)
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), out, atol=1e-5)


def test_pruning_leaves_batch_norm_statistics_as_trained() -> None:
    """The training-mode tracing pass must not move running statistics: the kept channels keep theirs."""
    from medlens.models import create_model
    from medlens.models.pruning import prune_network

    net = create_model("monai_resnet10", output="image", spatial_dims=2, in_channels=1, num_classes=2,
                       input_size=[28, 28], widen_factor=0.25).eval()  # fmt: skip
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(3.0, 1.0)  # far from what a batch of zeros would pull them to
    before = dict(net.named_buffers())["bn1.running_mean"].clone()
    pruned = prune_network(net, [1, 28, 28], 0.5, 2)
    after = dict(pruned.named_buffers())["bn1.running_mean"]
    assert after.numel() < before.numel()
    assert all(bool(torch.isclose(before, value).any()) for value in after)  # each kept channel's own mean


def test_prune_a_segmenter_end_to_end(hippo_run: Path, tmp_path: Path) -> None:
    """``medlens prune`` on the trained Hippocampus DynUNet: fewer parameters, and the pruned bundle segments."""
    from medlens.data.dataset import load_dataset

    out = tmp_path / "pruned"
    args = ["-q", "prune", str(hippo_run / "run"), "--out", str(out), "--ratio", "0.5", "--finetune-budget", "1m",
            "--set", "train.max_epochs=1"]  # fmt: skip
    assert main(args) == 0
    original, pruned = load_bundle(hippo_run / "run"), load_bundle(out)
    assert pruned.info["pruned"] is True and _parameters(pruned) < 0.3 * _parameters(original)
    data = load_dataset(hippo_run / "ds")
    image = data.image_paths(data.split("val")[0])[0]
    mask, reference = pruned.predict(image).labels, original.predict(image).labels  # type: ignore[attr-defined]
    assert mask.array.shape == reference.array.shape and set(np.unique(mask.array)) <= {0, 1, 2}


def test_a_task_without_distillation_says_so_in_one_line() -> None:
    with pytest.raises(ConfigError, match="the segmentation task cannot distil"):
        get_task("segmentation").distiller(None, None, None, None, [], temperature=4, soft_weight=0.7)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the detection task has no validation check"):
        get_task("detection").graph_check(None, None, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["distill", "prune"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out


def test_prune_into_a_users_folder_is_refused(pneumonia_run: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["-q", "prune", str(pneumonia_run / "run"), "-o", str(mine)]) == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
