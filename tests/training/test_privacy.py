"""Differential privacy (``train.privacy``): the plan's checks, a private run end to end on real PneumoniaMNIST
images, per-image clipping measured on a real step, and the refusals of tasks that cannot train privately."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medlens.cli.main import main
from medlens.core.errors import ConfigError
from medlens.tasks.base import get_task, load_bundle, load_plan
from medlens.training.overrides import apply_overrides
from medlens.training.plan import PrivacyPlan
from medlens.training.privacy import compatible_network, default_delta, make_private

LEGACY = Path(__file__).parent / "legacy_plans"
TINY_PRIVATE = [
    "--set", "train.max_epochs=1",
    "--set", "train.budget_minutes=null",
    "--set", "train.batch_size=8",
    "--set", "train.explain_images=0",
    "--set", "model.name=monai_resnet10",
    "--set", "model.kwargs={widen_factor: 0.125, stem_stride: 2, stem_pool: false}",
    "--set", "train.privacy.epsilon=8",
]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.privacy.epsilon=0", "train.privacy.epsilon"),
        ("train.privacy.epsilon=-1", "train.privacy.epsilon"),
        ("train.privacy.delta=1", "train.privacy.epsilon"),  # a delta alone: the epsilon is missing
        ("train.privacy={epsilon: 8, delta: 1}", "train.privacy.delta"),
        ("train.privacy={epsilon: 8, delta: 0}", "train.privacy.delta"),
        ("train.privacy={epsilon: 8, max_grad_norm: 0}", "train.privacy.max_grad_norm"),
        ("train.privacy={epsilon: 8, accountant: gdpr}", "train.privacy.accountant"),
    ],
)
def test_plan_refuses_bad_privacy_values_in_one_line(override: str, key: str) -> None:
    plan = load_plan(LEGACY / "classification_v1.yaml")
    with pytest.raises(ConfigError) as caught:
        apply_overrides(plan, [override])
    assert caught.value.key == key
    assert "\n" not in str(caught.value)
    assert apply_overrides(plan, ["train.privacy.epsilon=8"]).train.privacy == PrivacyPlan(epsilon=8)
    assert plan.train.privacy is None  # absent = no privacy


def test_default_delta_follows_its_rule() -> None:
    assert default_delta(200) == 1e-5
    assert default_delta(100_000) == pytest.approx(1e-6)


@pytest.mark.parametrize("plan_file", ["detection_v1.yaml", "segmentation_v1.yaml"])
def test_tasks_that_cannot_train_privately_refuse_in_one_line(plan_file: str) -> None:
    from medlens.training.privacy import check_task

    plan = apply_overrides(load_plan(LEGACY / plan_file), ["train.privacy.epsilon=8"])
    with pytest.raises(ConfigError) as caught:
        check_task(get_task(plan.task), plan)
    message = str(caught.value)
    assert caught.value.key == "train.privacy" and "\n" not in message
    assert f"the {plan.task} task cannot train privately" in message


def test_per_image_clipping_bounds_the_update(medmnist_subset) -> None:  # type: ignore[no-untyped-def]
    """With noise 0 and a tiny clipping norm C, one SGD step of lr 1 moves the weights by at most C (the mean of
    clipped per-image gradients); the same step without privacy moves them far more."""
    arrays = medmnist_subset("pneumoniamnist", 32, 1, 1)
    x = torch.from_numpy(arrays["train_images"][:, None].astype(np.float32) / 255.0)  # (32, 1, 28, 28)
    y = torch.from_numpy(arrays["train_labels"][:, 0].astype(np.int64))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    moves = {}
    for private in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2))
        sgd = torch.optim.SGD(net.parameters(), lr=1.0)
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        optimizer, batches = sgd, loader
        if private:
            dp = make_private(net, sgd, loader, PrivacyPlan(epsilon=8, max_grad_norm=1e-3), epochs=1)
            dp.optimizer.noise_multiplier = 0.0
            optimizer, batches = dp.optimizer, loader  # the plain loader: the whole batch, for a fixed comparison
        xb, yb = next(iter(batches))
        torch.nn.functional.cross_entropy(net(xb * 100), yb).backward()
        optimizer.step()
        moves[private] = float((torch.cat([p.detach().flatten() for p in net.parameters()]) - before).norm())
    assert moves[True] <= 1e-3 * 1.0001
    assert moves[False] > 100 * moves[True]


def test_batchnorm_is_replaced_when_the_plan_is_private() -> None:
    from medlens.models import create_model

    kwargs = {"output": "image", "spatial_dims": 2, "in_channels": 1, "num_classes": 2, "input_size": [28, 28]}
    plain = create_model("monai_resnet10", widen_factor=0.125, **kwargs)
    private = create_model("monai_resnet10", widen_factor=0.125, private=True, **kwargs)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in private.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in private.modules())
    again = compatible_network(private, "monai_resnet10")  # fixing a fixed network (it is copied) changes nothing
    assert list(again.state_dict()) == list(private.state_dict())
    assert [n for n, _ in private.named_parameters()] == [n for n, _ in plain.named_parameters()]  # same names


def test_private_run_records_spent_epsilon_and_its_bundle_predicts(tmp_path: Path, small_pneumonia_npz: Path) -> None:
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert main(["-q", "import", "medmnist", str(small_pneumonia_npz), "--out", str(ds)]) == 0
    assert main(["-q", "plan", str(ds)]) == 0
    assert main(["-q", "train", str(ds), "--out", str(run), *TINY_PRIVATE]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    record = summary["privacy"]
    assert 0 < record["epsilon_spent"] <= 8.0 and record["epsilon_target"] == 8.0
    assert record["delta"] == default_delta(40) and record["delta_rule"]
    member = summary["member_summaries"][0]["privacy"]
    assert member["steps"] == summary["member_summaries"][0]["steps"] > 0
    bundle = load_bundle(run / "bundle")
    assert bundle.info["privacy"]["epsilon_spent"] == record["epsilon_spent"]
    card = (run / "bundle" / "model_card.md").read_text(encoding="utf-8")
    assert f"Trained with differential privacy: ε = {record['epsilon_spent']:.3g} spent of 8" in card
    assert "Only the training images are protected: the validation images" in card  # and says what is not
    assert record["not_covered"].startswith("the validation images")
    net = bundle.networks()[0]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    state = torch.load(run / "seed_0" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert not any("_module." in k for k in state)  # Opacus's hooks, not its wrapper: the keys are the network's
    prediction = bundle.predict(sorted(ds.rglob("*.png"))[0])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert yaml.safe_load((run / "bundle" / "bundle.yaml").read_text())["info"]["privacy"]["delta"] == record["delta"]
    _resume_continues_the_accountant(run, member)


def _resume_continues_the_accountant(run: Path, member: dict) -> None:  # type: ignore[type-arg]
    """The accountant travels in the checkpoint as plain values; a resumed fit counts on from it."""
    from types import SimpleNamespace

    from medlens.training.privacy import PrivateFitting

    ckpt = torch.load(run / "seed_0" / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("PrivateFitting")]
    assert state["accountant_history"] == member["accountant_history"]
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(40, 4), torch.randint(0, 2, (40,))), batch_size=8
    )
    resumed = PrivateFitting(PrivacyPlan(epsilon=8), loader, epochs=1, share=1, seed=0)
    resumed.load_state_dict(state)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = SimpleNamespace(strategy=SimpleNamespace(optimizers=[optimizer]))
    resumed.on_fit_start(trainer, SimpleNamespace(net=net))  # type: ignore[arg-type]
    x, y = next(iter(resumed.loader))
    torch.nn.functional.cross_entropy(net(x), y).backward()
    trainer.strategy.optimizers[0].step()
    steps = sum(int(n) for _, _, n in resumed.state_dict()["accountant_history"])
    assert steps == member["steps"] + 1
    assert resumed.facts()["epsilon_spent"] > 0
