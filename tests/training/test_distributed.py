"""Training in 2 CPU processes (DDP through Lightning, gloo on 127.0.0.1): a run started in 1 process and
interrupted resumes in 2, trains its seeds loop there, and rank 0 alone writes one bundle whose networks score on
the whole validation set exactly what training logged."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from trained_runs import TINY

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ddp")]


class _Stop(RuntimeError):
    """Raised from the progress callback: an interruption the test controls."""


def test_run_interrupted_in_one_process_resumes_in_two(pneumonia_run: Path, tmp_path: Path) -> None:
    from medlens.tasks.base import get_task, load_bundle
    from medlens.training.images import normalize
    from medlens.workflows.training import train

    dataset, run = pneumonia_run / "ds", tmp_path / "run"
    overrides = [v for v in TINY if v != "--set"] + ["train.early_stopping_patience=null", "train.explain_images=0"]
    steps_per_epoch = 80 // 16  # 80 training images, a global batch of 16 (8 per process in 2 processes)

    def stop_in_second_epoch(stage: str, done: int, total: int | None) -> None:
        if stage == "training seed_0" and done > steps_per_epoch:
            raise _Stop

    with pytest.raises(_Stop):  # 1 process: seed_0's first epoch is checkpointed, then the run stops
        train(dataset, run, seeds=2, overrides=overrides, progress=stop_in_second_epoch)
    assert (run / "seed_0" / "checkpoints" / "last.ckpt").is_file() and not (run / "bundle").exists()

    medlens = str(Path(sys.executable).with_name("medlens"))
    done = subprocess.run(
        [medlens, "-q", "train", str(dataset), "--out", str(run), "--resume", "--devices", "2"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model bundle:") == 1  # rank 1 trained silently

    for member in ("seed_0", "seed_1"):
        summary = json.loads((run / member / "summary.json").read_text())
        assert summary["epochs"] == 2
        assert summary["steps"] == 2 * steps_per_epoch  # the same steps per epoch in 1 and in 2 processes
        assert summary["distributed"]["processes"] == 2 and summary["distributed"]["batch_per_process"] == 8
        assert summary["distributed"]["sync_batchnorm"] is False  # PyTorch's SyncBatchNorm needs GPUs
    with open(run / "seed_0" / "logs" / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val_auc")]
    assert [(r["session"], r["epoch"]) for r in rows] == [("session_0", "0"), ("session_1", "1")]  # resumed, once
    # one bundle, one summary, nothing written twice or beside them by rank 1
    assert sorted(p.name for p in run.iterdir()) == [
        ".medlens", "bundle", "plan.yaml", "run.yaml", "seed_0", "seed_1", "train_summary.json"
    ]  # fmt: skip
    assert sorted(p.name for p in (run / "seed_1" / "logs").iterdir()) == ["metrics.csv", "session_0"]

    bundle = load_bundle(run / "bundle")
    task = get_task("classification")
    from medlens.data.dataset import load_dataset

    data = load_dataset(dataset)
    val = data.split("val")
    prepared = task.prepare(data, bundle.plan, val, None)
    x = normalize(prepared.inputs(val), bundle.plan.data)
    y = np.array([data.class_index(c) for c in val])
    assert len(val) == 40
    for member, net in zip(("seed_0", "seed_1"), bundle.networks(), strict=True):
        with torch.inference_mode():
            scores = torch.softmax(net(x), dim=1)[:, 1].numpy()
        logged = json.loads((run / member / "summary.json").read_text())["best_val_auc"]
        # the bundle holds the best checkpoint, and the figure training logged is over all 40 validation images
        assert roc_auc_score(y, scores) == pytest.approx(logged, abs=1e-5)
    prediction = bundle.predict(data.image_paths(val[0])[0])
    assert np.isclose(sum(prediction.probabilities.values()), 1.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("gpu", [False, True])
def test_batch_norm_is_synchronised_across_processes_on_gpus(gpu: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from medlens.training.distributed import Processes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert Processes(devices=2).trainer_args()["sync_batchnorm"] is gpu
    assert "sync_batchnorm" not in Processes(devices=1).trainer_args()  # one process: nothing to share


def test_a_batch_that_does_not_divide_is_refused_before_any_work(pneumonia_run: Path, tmp_path: Path) -> None:
    from medlens.core.errors import ConfigError
    from medlens.workflows.training import train

    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"train\.batch_size.*3 processes"):
        train(pneumonia_run / "ds", run, overrides=["train.batch_size=16"], devices=3)
    assert not run.exists()


@pytest.mark.parametrize(
    ("option", "problem"),
    [(["--strategy", "fsdp"], "--strategy: 'fsdp' is not a strategy"), (["--nodes", "0"], "--nodes")],
)
def test_a_strategy_or_node_count_that_cannot_be_is_refused(
    pneumonia_run: Path, tmp_path: Path, option: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from medlens.cli.main import main

    run = tmp_path / "run"
    assert main(["train", str(pneumonia_run / "ds"), "--out", str(run), *option]) != 0
    assert problem in capsys.readouterr().err and not run.exists()


@pytest.mark.parametrize("kind", ["batches of indices", "batched draws with replacement"])
def test_two_shards_train_exactly_the_batches_of_one_process(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch rule: process r takes half of every global batch; together the two train what one would."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    from medlens.training.distributed import Processes, shard

    data = TensorDataset(torch.arange(40))

    def loader() -> DataLoader:  # type: ignore[type-arg]
        generator = torch.Generator().manual_seed(3)  # each process builds the same seeded loader
        if kind == "batches of indices":  # the in-memory whole-image loader
            return DataLoader(data, sampler=BatchSampler(RandomSampler(range(40), generator=generator), 8, True),
                              batch_size=None)  # fmt: skip
        sampler = RandomSampler(range(40), replacement=True, num_samples=24, generator=generator)  # segmentation's
        return DataLoader(data, batch_size=8, sampler=sampler, drop_last=True)

    single = [sorted(b[0].tolist()) for b in loader()]
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        parts.append([b[0].tolist() for b in shard(loader(), Processes(devices=2))])
    assert [len(p) for p in parts] == [len(single)] * 2  # the same steps per epoch
    assert all(len(b) == 4 for p in parts for b in p)  # 8 / 2 images per process
    assert [sorted(a + b) for a, b in zip(*parts, strict=True)] == single
