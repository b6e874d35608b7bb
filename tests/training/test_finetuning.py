"""Fine-tuning modes: each trains what it says and freezes the rest; LoRA merges into a bundle that predicts as the
adapted network did and exports to ONNX; layer-wise learning rates; the rule that picks a mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from medlens.cli.main import main
from medlens.core.errors import ConfigError
from medlens.models import create_model
from medlens.training.finetuning import (
    FrozenNorms,
    apply_finetuning,
    choose_mode,
    head_names,
    layer_ids,
    parameter_groups,
    plain_weights,
    stages,
)
from medlens.training.optimization import configure_optimizer
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, Plan, TrainPlan


def _plan(**train: object) -> Plan:
    return Plan(
        task="classification",
        spatial_dims=2,
        class_names=["a", "b"],
        data=DataPlan(input_size=[28, 28]),
        augment=AugmentPlan(),
        model=ModelPlan(name="monai_resnet18", kwargs={"widen_factor": 0.25}, pretrained="init.pt"),
        optim=OptimPlan(lr=1e-2, weight_decay=0.0, layer_decay=0.5),
        train=TrainPlan(**train),  # type: ignore[arg-type]
    )


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(
        "monai_resnet18", output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28],
        widen_factor=0.25,
    )  # fmt: skip


def _step(module: SimpleNamespace, plan: Plan, steps: int = 2) -> dict[str, torch.Tensor]:
    """Optimiser steps on random images (two: LoRA's A moves only once B has left zero); returns the parameters
    before them, by name."""
    net = module.net
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = configure_optimizer(net, plan.optim, None)
    net.train()
    for _ in range(steps):
        x, y = torch.randn(8, 1, 28, 28), torch.tensor([0, 1] * 4)
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return before


@pytest.mark.parametrize("mode", ["full", "linear", "partial", "lora"])
def test_each_mode_trains_what_it_says_and_leaves_the_rest_unchanged(mode: str) -> None:
    plan = _plan(finetune=mode, freeze_stages=2)
    module = SimpleNamespace(net=_net())
    total = sum(p.numel() for p in module.net.parameters())
    head = sum(p.numel() for p in module.net.fc.parameters())
    tuning = apply_finetuning(module, plan)  # type: ignore[arg-type]
    before = _step(module, plan)
    changed = {n for n, p in module.net.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in module.net.named_parameters() if p.requires_grad}
    assert tuning.mode == mode
    assert tuning.trainable == sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    assert changed == trainable  # every trainable tensor moved, no frozen one did
    if mode == "full":
        assert tuning.trainable == tuning.total == total
    elif mode == "linear":
        assert tuning.trainable == head and trainable == {"fc.weight", "fc.bias"}
    elif mode == "partial":
        frozen = {n for n in before if n.split(".")[0] in ("conv1", "bn1", "layer1")}  # stem + first stage
        assert tuning.details == {"frozen_stages": 2, "stages": 5, "layer_decay": 0.5}
        assert trainable == set(before) - frozen
    else:  # lora: adapters on every convolution outside the head, the head in full, base weights frozen
        assert all(".lora_" in n or ".fc." in n for n in trainable)
        assert any(".layer4." in n and ".lora_A." in n for n in trainable)
        assert tuning.total == total + sum(p.numel() for n, p in module.net.named_parameters() if ".lora_" in n)
        assert head < tuning.trainable < 0.25 * total


def test_lora_merges_to_a_plain_network_that_answers_the_same() -> None:
    plan = _plan(finetune="lora", lora_rank=4, lora_alpha=8)
    module = SimpleNamespace(net=_net())
    apply_finetuning(module, plan)  # type: ignore[arg-type]
    _step(module, plan, steps=3)  # LoRA's B starts at zero: train a little so that the adapters change the answer
    x = torch.randn(4, 1, 28, 28)
    module.net.eval()
    untouched = _net().eval()  # the same starting weights, without adapters or training
    with torch.no_grad():
        adapted = module.net(x)
        assert not torch.allclose(adapted, untouched(x), atol=1e-3)
    plain = plain_weights(module.net.state_dict(), plan, lambda: _net(seed=1))  # a differently initialised build
    assert not any("lora" in k or k.startswith("base_model") for k in plain)
    merged = _net(seed=2)
    merged.load_state_dict(plain)  # strict: exactly the plain network's tensors
    merged.eval()
    with torch.no_grad():
        assert torch.allclose(merged(x), adapted, atol=1e-5)


def test_layer_decay_gives_each_depth_its_rate() -> None:
    net = _net()
    groups = parameter_groups(net, OptimPlan(lr=1.0, weight_decay=0.1, layer_decay=0.5))
    ids, deepest = layer_ids(net)
    assert deepest == 5 == len(stages(net))  # stem, layer1..4; the head is deepest
    assert (ids["conv1.weight"], ids["bn1.bias"], ids["layer2.1.conv2.weight"], ids["fc.weight"]) == (0, 0, 2, 5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(net.named_parameters())
    assert rate[id(named["fc.weight"])] == 1.0
    assert rate[id(named["conv1.weight"])] == 0.5**5
    assert rate[id(named["layer3.0.conv1.weight"])] == 0.5**2
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["layer3.0.conv1.weight"])] == 0.1 and decay[id(named["layer3.0.bn1.weight"])] == 0.0
    flat = parameter_groups(net, OptimPlan(lr=1.0))
    assert {g["lr"] for g in flat} == {1.0} and sum(len(g["params"]) for g in flat) == len(named)


def test_frozen_norms_keep_their_statistics() -> None:
    module = SimpleNamespace(net=_net())
    tuning = apply_finetuning(module, _plan(finetune="linear"))  # type: ignore[arg-type]
    assert isinstance(tuning.callback, FrozenNorms) and tuning.callback.norms
    stats = module.net.bn1.running_mean.clone()
    module.net.train()
    tuning.callback.on_train_batch_start()
    module.net(torch.randn(8, 1, 28, 28) * 5 + 3)
    assert torch.equal(module.net.bn1.running_mean, stats)


def test_freezing_every_stage_is_refused() -> None:
    with pytest.raises(ConfigError, match="freeze_stages"):
        apply_finetuning(SimpleNamespace(net=_net()), _plan(finetune="partial", freeze_stages=5))  # type: ignore[arg-type]


def test_the_rule_picks_a_mode_from_labels_only_for_pretrained_weights() -> None:
    assert choose_mode(_plan(), 50)[0] == "linear"
    assert choose_mode(_plan(), 470)[0] == "lora"
    assert choose_mode(_plan(), 4708)[0] == "full"
    scratch = _plan().without_pretrained()
    mode, why = choose_mode(scratch, 50)
    assert mode == "full" and "scratch" in why
    assert choose_mode(_plan(finetune="partial"), 50) == ("partial", "set in the plan (train.finetune)")


def test_a_masked_autoencoder_encoder_is_fine_tuned_not_probed(tmp_path: Path) -> None:
    for method in ("mae", "simclr"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "pretrain.yaml").write_text(f"method: {method}\nspatial_dims: 2\n")
    mae = _plan()
    mae = mae.model_copy(
        update={"model": mae.model.model_copy(update={"pretrained": None, "init": str(tmp_path / "mae")})}
    )
    mode, why = choose_mode(mae, 47)
    assert mode == "full" and "masked-autoencoder" in why
    assert choose_mode(mae, 470)[0] == "lora"  # only the few-label choice changes
    simclr = mae.model_copy(update={"model": mae.model.model_copy(update={"init": str(tmp_path / "simclr")})})
    assert choose_mode(simclr, 47)[0] == "linear"


@pytest.mark.parametrize(
    ("name", "dims", "size", "head"),
    [
        ("vit_tiny", 2, [28, 28], ["head"]),
        ("convnext_atto", 2, [28, 28], ["head.fc"]),
        ("monai_vit", 3, [16, 16, 16], ["classification_head"]),
    ],
)
def test_stages_and_heads_of_the_new_backbones(name: str, dims: int, size: list[int], head: list[str]) -> None:
    net = create_model(name, output="image", spatial_dims=dims, in_channels=1, num_classes=2, input_size=size)
    assert head_names(net) == head
    module = SimpleNamespace(net=net)
    tuning = apply_finetuning(module, _plan(finetune="lora").model_copy(update={"spatial_dims": dims}))  # type: ignore[arg-type]
    assert tuning.trainable < tuning.total / 5
    assert len(stages(module.net)) >= 4


def test_a_lora_run_writes_a_plain_bundle_that_predicts_and_exports(
    tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]], write_npz: Callable[..., Path]
) -> None:
    import json

    from medlens.models.bundle import Bundle
    from medlens.tasks.base import load_bundle
    from medlens.training.fitting import best_weights

    npz = write_npz(tmp_path / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist", 48, 24, 8))
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(tmp_path / "ds")]) == 0
    init = tmp_path / "init.pt"
    torch.save(_net(seed=3).state_dict(), init)
    tiny = ["--set", "train.max_epochs=1", "--set", "train.budget_minutes=null", "--set", "train.batch_size=16",
            "--set", "model.kwargs={widen_factor: 0.25, stem_stride: 1, stem_pool: false}",
            "--set", "train.explain_images=0", "--set", f"model.pretrained={init}"]  # fmt: skip
    assert main(["-q", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), *tiny]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    tuning = summary["finetune"]
    assert tuning["mode"] == "linear" and "48 labelled" in tuning["why"]  # auto: pretrained, fewer than 100 labels
    assert tuning["trainable_parameters"] == 2 * 128 + 2  # the head of a quarter-width ResNet-18
    card = (tmp_path / "run" / "bundle" / "model_card.md").read_text()
    assert f"258 of {tuning['total_parameters']:,} parameters trained" in card

    run = tmp_path / "run_lora"
    assert main(["-q", "train", str(tmp_path / "ds"), "--out", str(run), *tiny, "--set", "train.finetune=lora"]) == 0
    bundle = load_bundle(run / "bundle")
    assert isinstance(bundle, Bundle)
    state = best_weights(run / "seed_0")
    assert any(".lora_A." in k for k in state)  # the checkpoint holds the adapters, the bundle their merge
    plan = bundle.plan.without_pretrained()
    module = SimpleNamespace(net=bundle.task.build_network(plan))
    apply_finetuning(module, plan)  # type: ignore[arg-type]
    module.net.load_state_dict(state)
    module.net.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(bundle.networks()[0](x), module.net(x), atol=1e-5)
    prediction = bundle.predict(sorted((tmp_path / "ds" / "images").glob("test_*.png"))[0])
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5
    assert main(["-q", "export", str(run), "--out", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_the_plan_says_what_auto_will_choose(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    from medlens.workflows.planning import make_plan

    plan = make_plan(pneumonia_dataset)
    assert plan.train.finetune == "auto"
    assert any("fine-tuning auto" in n and "40 labels here, so linear when a start is given" in n for n in plan.notes)
    assert choose_mode(plan, None)[0] == "full"  # no pretrained weights
    dense = plan.model_copy(update={"model": plan.model.model_copy(update={"pretrained": "x.pt"})})
    assert choose_mode(dense, None)[0] == "full"  # labels per voxel or box: the image-count rule does not apply
