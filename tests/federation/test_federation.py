"""``medlens federated``: a simulated federation gives an ordinary bundle (evaluate, predict, export) whose card
records the sites; DP-SGD at each site records its epsilon; FedProx's term is in the local loss; a real Flower
server and site processes on 127.0.0.1 train together while the server's copy of the dataset holds no image."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from medlens.cli.main import main
from medlens.tasks.base import load_bundle

SMALL = [
    "--set",
    "train.batch_size=8",
    "--set",
    "train.explain_images=0",
    "--set",
    "model.name=monai_resnet10",
    "--set",
    "model.kwargs={widen_factor: 0.125, stem_stride: 2, stem_pool: false}",
]


def _dataset(tmp_path: Path, npz: Path) -> Path:
    ds = tmp_path / "ds"
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(ds)]) == 0
    assert main(["-q", "plan", str(ds)]) == 0
    return ds


def test_simulated_private_federation_is_an_ordinary_bundle(tmp_path: Path, small_pneumonia_npz: Path) -> None:
    ds, run = _dataset(tmp_path, small_pneumonia_npz), tmp_path / "run"
    args = ["-q", "federated", str(ds), "--out", str(run), "--sites", "2", "--rounds", "2", "--budget", "0.2m",
            *SMALL, "--set", "train.privacy.epsilon=8"]  # fmt: skip
    assert main(args) == 0
    federation = json.loads((run / "federation.json").read_text())
    assert federation["strategy"] == "fedavg" and federation["rounds"] == 2
    assert federation["budget_per_site_round_minutes"] == pytest.approx(0.2 / 4)  # budget / (rounds x sites)
    assert [s["site"] for s in federation["sites"]] == ["site_0", "site_1"]
    assert sum(s["n_train"] for s in federation["sites"]) == 40
    assert sum(sum(s["label_mix"].values()) for s in federation["sites"]) == 40
    assert [r["round"] for r in federation["fit_per_round"]] == [1, 2]
    assert all(len(r["sites"]) == 2 for r in federation["fit_per_round"])
    for site in federation["sites"]:  # each site's DP-SGD over both its rounds kept to the budget
        assert 0 < site["epsilon_spent"] <= 8.0
        rounds = sorted((run / "sites" / site["site"]).glob("round_*/summary.json"))
        assert len(rounds) == 2 and all(json.loads(p.read_text())["privacy"]["steps"] > 0 for p in rounds)
    card = (run / "bundle" / "model_card.md").read_text(encoding="utf-8")
    assert "Federated training with Flower (fedavg): 2 sites, 2 rounds" in card
    assert "site_0 " in card and "ε spent per site" in card and "Operating point chosen at site_0" in card
    # the bundle holds the last global model: the average of the sites' last-round weights (equal sizes here)
    bundle = load_bundle(run)
    site_states = [
        torch.load(run / "sites" / s / "round_2" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for s in ("site_0", "site_1")
    ]
    weights = [s["n_train"] for s in federation["sites"]]
    net = bundle.networks()[0].state_dict()
    key = next(k for k in net if k.endswith("weight") and net[k].dim() > 1)
    average = sum(w * s[f"net.{key}"] for w, s in zip(weights, site_states, strict=True)) / sum(weights)
    assert torch.allclose(net[key], average, atol=1e-5)
    # evaluate, predict and export work on it as on any run
    assert (
        main(["-q", "evaluate", str(run), "--split", "test", "--out", str(tmp_path / "eval"), "--bootstrap", "50"]) == 0
    )
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_cases"] == 20
    image = sorted((ds / "images").glob("test_*.png"))[0]
    assert main(["-q", "predict", str(run), str(image), "--out", str(tmp_path / "pred")]) == 0
    assert main(["-q", "export", str(run), "--out", str(tmp_path / "onnx")]) == 0
    assert any((tmp_path / "onnx").glob("*.onnx"))
    # an existing run is not overwritten without --overwrite
    from medlens.core.errors import InputError
    from medlens.workflows.federated import federated

    before = (run / "federation.json").read_bytes()
    with pytest.raises(InputError, match="exists and is not empty"):
        federated(ds, run, sites=2, rounds=1)
    assert (run / "federation.json").read_bytes() == before


def test_fedprox_adds_its_proximal_term_to_the_local_loss(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    from flwr.server.strategy import FedProx

    from medlens.core.errors import ConfigError
    from medlens.federation.server import Record, Settings, make_strategy
    from medlens.federation.site import proximal
    from medlens.tasks.base import get_task
    from medlens.training.overrides import apply_overrides
    from medlens.workflows.planning import resolve_plan

    task = get_task("classification")
    plan = resolve_plan(pneumonia_dataset, ["model.kwargs.widen_factor=0.125"])
    module = task.module(plan, None).eval()
    anchor = [p.detach().clone() for p in module.net.parameters()]
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])
    plain_step = module.training_step

    def loss(step) -> float:  # type: ignore[no-untyped-def]
        torch.manual_seed(0)  # the same random augmentation for every call
        return float(step((x, y), 0))

    proximal(module, anchor, mu=0.5)
    assert loss(module.training_step) == pytest.approx(loss(plain_step), rel=1e-6)  # at the global weights: 0
    first = next(module.net.parameters())
    with torch.no_grad():
        first.add_(0.1)
    expected = 0.5 * 0.5 * first.numel() * 0.1**2  # mu/2 * ||w - w_global||^2
    assert loss(module.training_step) - loss(plain_step) == pytest.approx(expected, rel=1e-3)
    settings = Settings(sites=2, rounds=1, strategy="fedprox", proximal_mu=0.5)
    strategy = make_strategy(settings, plan, [p.numpy() for p in anchor], Record())
    assert isinstance(strategy, FedProx) and strategy.proximal_mu == 0.5  # Flower's FedProx sends mu to the sites
    with pytest.raises(ConfigError, match=r"FedProx with train\.privacy"):
        settings.check(apply_overrides(plan, ["train.privacy.epsilon=8"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flower_server_and_site_processes_train_together(
    tmp_path: Path, small_pneumonia_npz: Path, medlens_script: Path
) -> None:
    ds = _dataset(tmp_path, small_pneumonia_npz)
    blind = tmp_path / "server_copy"  # the server's copy of the dataset: description and plan, no image at all
    shutil.copytree(ds, blind, ignore=shutil.ignore_patterns("images", "*.png"))
    assert not list(blind.rglob("*.png"))
    address = f"127.0.0.1:{_free_port()}"
    common = ["--sites", "2", "--connect", address]
    sites = [
        subprocess.Popen(
            [str(medlens_script), "-q", "federated", str(ds), "--out", str(tmp_path / name), *common, "--site", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("site_0", "site_1")
    ]
    server = subprocess.Popen(
        [
            str(medlens_script),
            "-q",
            "federated",
            str(blind),
            "--out",
            str(tmp_path / "run"),
            "--sites",
            "2",
            "--rounds",
            "2",
            "--serve",
            address,
            *SMALL,
            "--set",
            "train.max_epochs=1",
            "--set",
            "train.budget_minutes=null",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = server.communicate(timeout=240)
        assert server.returncode == 0, out[-3000:]
        for site in sites:
            text, _ = site.communicate(timeout=60)
            assert site.returncode == 0, text[-3000:]
    finally:
        for process in [server, *sites]:
            if process.poll() is None:
                process.kill()
    federation = json.loads((tmp_path / "run" / "federation.json").read_text())
    assert federation["mode"] == f"gRPC server on {address}"
    assert sorted(s["site"] for s in federation["sites"]) == ["site_0", "site_1"]
    assert [r["round"] for r in federation["val_per_round"]] == [1, 2]
    assert federation["calibrated_at"] == "site_0"
    assert not (tmp_path / "run" / "sites").exists()  # the sites' local fits stay at the sites
    for name in ("site_0", "site_1"):
        assert sorted(p.name for p in (tmp_path / name).glob("round_*")) == ["round_1", "round_2"]
    bundle = load_bundle(tmp_path / "run")
    prediction = bundle.predict(sorted((ds / "images").glob("test_*.png"))[0])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)  # type: ignore[attr-defined]


def test_a_server_whose_sites_do_not_all_come_stops_and_says_so(
    tmp_path: Path, small_pneumonia_npz: Path, medlens_script: Path
) -> None:
    """One of two sites joins; after --wait the server exits non-zero naming how many came, and leaves no run."""
    ds = _dataset(tmp_path, small_pneumonia_npz)
    address = f"127.0.0.1:{_free_port()}"
    site = subprocess.Popen(
        [str(medlens_script), "-q", "federated", str(ds), "--out", str(tmp_path / "site_0"), "--sites", "2",
         "--connect", address, "--site", "site_0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = subprocess.Popen(
        [str(medlens_script), "-q", "federated", str(ds), "--out", str(tmp_path / "run"), "--sites", "2",
         "--serve", address, "--wait", "8s", *SMALL],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = server.communicate(timeout=120)
    finally:
        for process in (server, site):
            if process.poll() is None:
                process.kill()
        site.communicate(timeout=30)
    assert server.returncode == 1, out[-3000:]
    assert f"{address}: 1 of 2 site(s) connected after waiting 8 s (--wait)" in out
    assert not (tmp_path / "run").exists()


def test_command_line_options_reach_the_federation_record(
    tmp_path: Path, small_pneumonia_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, run = _dataset(tmp_path, small_pneumonia_npz), tmp_path / "run"
    args = ["-q", "federated", str(ds), "-o", str(run), "--sites", "2", "--rounds", "1", "--budget", "0.05m",
            "--skew", "label", "--alpha", "5", "--split-seed", "3", "--strategy", "fedprox", "--mu", "0.1",
            "--local-epochs", "1", *SMALL]  # fmt: skip
    assert main(args) == 0
    record = json.loads((run / "federation.json").read_text())
    assert (record["strategy"], record["proximal_mu"], record["rounds"], record["local_epochs"]) == (
        "fedprox",
        0.1,
        1,
        1,
    )
    assert "Dirichlet(alpha=5)" in record["split_rule"] and "seed 3" in record["split_rule"]
    before = (run / "federation.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 1 and "not empty" in capsys.readouterr().err  # a run is replaced only with --overwrite
    assert (run / "federation.json").read_bytes() == before
    again = [a if a != "fedprox" else "fedavg" for a in args]
    assert main([*again, "--overwrite"]) == 0
    assert json.loads((run / "federation.json").read_text())["strategy"] == "fedavg"
    assert main([*again, "--overwrite", "--split-by", "hospital"]) == 1
    assert "'hospital'" in capsys.readouterr().err
