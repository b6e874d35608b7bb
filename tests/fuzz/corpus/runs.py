"""Mutations of trained runs: their bundle (predict, evaluate, export) and their checkpoints (resume)."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
    checkpoint_with_payload,
    marker_for,
    pickle_payload,
)

# ---- bundles ------------------------------------------------------------------------------------------------------
# ``folder`` is a copy of a trained run (run.yaml, plan.yaml, bundle/); the mutations edit its bundle.


def _spec(folder: Path, change: Callable[[dict[str, Any]], Any], names: str = "bundle.yaml") -> Built:
    import yaml

    path = folder / "bundle" / "bundle.yaml"
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return Built(folder, names)


def _spec_text(folder: Path, text: str | bytes) -> Built:
    path = folder / "bundle" / "bundle.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return Built(folder, "bundle.yaml")


def _weights(folder: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Built:
    from safetensors.torch import load_file, save_file

    path = folder / "bundle" / "member_0.safetensors"
    save_file(change(load_file(str(path))), str(path))
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__yaml_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "bundle.yaml").unlink()
    return Built(folder)


@mutation("bundle")
def bundle__yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "task: classification\nplan: {data: [\n")


@mutation("bundle")
def bundle__yaml_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "- member_0.safetensors\n")


@mutation("bundle")
def bundle__yaml_empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, "")


@mutation("bundle")
def bundle__yaml_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec_text(folder, (folder / "bundle" / "bundle.yaml").read_bytes().replace(b"format:", b"f\xf6rmat:", 1))


@mutation("bundle")
def bundle__yaml_python_tag(folder: Path, src: Sources, rng: random.Random) -> Built:
    text = (folder / "bundle" / "bundle.yaml").read_text()
    return _spec_text(folder, text + f'extra: !!python/object/apply:builtins.open ["{marker_for(folder)}", "w"]\n')


@mutation("bundle")
def bundle__format_from_the_future(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(format="medlens-bundle/99"), "medlens-bundle/99")


@mutation("bundle")
def bundle__plan_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.pop("plan"))


@mutation("bundle")
def bundle__plan_batch_size_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["train"].update(batch_size=0), "train.batch_size")


@mutation("bundle")
def bundle__plan_learning_rate_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["optim"].update(lr=math.nan), "optim.lr")


@mutation("bundle")
def bundle__plan_version_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"].update(version=[2]), "version")


@mutation("bundle")
def bundle__plan_unknown_task(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"].update(task="prognosis"), "prognosis")


@mutation("bundle")
def bundle__plan_unknown_model_argument(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s["plan"]["model"]["kwargs"].update(depth_multiplier=3), "model.kwargs")


@mutation("bundle")
def bundle__members_empty(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(members=[]))


@mutation("bundle")
def bundle__member_leaving_the_bundle(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "member_0.safetensors").write_bytes((folder / "bundle" / "member_0.safetensors").read_bytes())
    return _spec(folder, lambda s: s.update(members=["../member_0.safetensors"]))


@mutation("bundle")
def bundle__member_absolute_path(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(members=[str(folder / "bundle" / "member_0.safetensors")]))


@mutation("bundle")
def bundle__member_not_safetensors(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "member_0.safetensors").rename(folder / "bundle" / "member_0.pt")
    return _spec(folder, lambda s: s.update(members=["member_0.pt"]))


@mutation("bundle")
def bundle__member_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "bundle" / "member_0.safetensors").unlink()
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "bundle" / "member_0.safetensors"
    path.write_bytes(pickle.dumps({"conv1.weight": pickle_payload(marker_for(folder))}))
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "bundle" / "member_0.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    return Built(folder, "member_0.safetensors")


@mutation("bundle")
def bundle__member_tensor_of_another_shape(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        key = next(k for k, v in state.items() if v.ndim == 4)
        state[key] = state[key][:, :, :2, :2].contiguous()
        return state

    return _weights(folder, change)


@mutation("bundle")
def bundle__member_tensor_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        dropped = next(k for k, v in state.items() if v.ndim == 4)  # a convolution's weights
        return {k: v for k, v in state.items() if k != dropped}

    return _weights(folder, change)


@mutation("bundle")
def bundle__member_tensor_extra(folder: Path, src: Sources, rng: random.Random) -> Built:
    import torch

    return _weights(folder, lambda state: state | {"extra.weight": torch.zeros(3)})


@mutation("bundle")
def bundle__member_weights_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        key = next(k for k, v in state.items() if v.ndim == 4)
        state[key] = state[key].clone()
        state[key][0] = float("nan")
        return state

    return _weights(folder, change)


@mutation("bundle")
def bundle__threshold_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold="high"), "threshold")


@mutation("bundle")
def bundle__threshold_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold=math.nan), "threshold")


@mutation("bundle")
def bundle__threshold_out_of_range(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(threshold=7.5), "threshold")


@mutation("bundle")
def bundle__info_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _spec(folder, lambda s: s.update(info=["trained", "yesterday"]), "info")


# ---- run folders to resume ----------------------------------------------------------------------------------------
# ``folder`` is a copy of a trained run whose member has not finished (its summary.json removed): ``--resume``
# continues it from seed_0/checkpoints/last.ckpt.


def _last(folder: Path) -> Path:
    return folder / "seed_0" / "checkpoints" / "last.ckpt"


@mutation("run")
def run__checkpoint_pickle_payload(folder: Path, src: Sources, rng: random.Random) -> Built:
    checkpoint_with_payload(_last(folder), marker_for(folder))
    return Built(folder, "last.ckpt")


@mutation("run")
def run__checkpoint_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = _last(folder)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return Built(folder, "last.ckpt")


@mutation("run")
def run__checkpoint_not_a_checkpoint(folder: Path, src: Sources, rng: random.Random) -> Built:
    _last(folder).write_text("interrupted\n")
    return Built(folder, "last.ckpt")


@mutation("run")
def run__run_yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "run.yaml").write_text("dataset: [\n")
    return Built(folder, "run.yaml")


@mutation("run")
def run__run_yaml_other_dataset(folder: Path, src: Sources, rng: random.Random) -> Built:
    lines = (folder / "run.yaml").read_text().splitlines()
    lines = ["dataset: /elsewhere/ds" if line.startswith("dataset:") else line for line in lines]
    (folder / "run.yaml").write_text("\n".join(lines) + "\n")
    return Built(folder, "/elsewhere/ds")


@mutation("run")
def run__plan_yaml_broken(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "plan.yaml").write_text("train: {batch_size: 0}\n")
    return Built(folder, "plan.yaml")


@mutation("run")
def run__summary_not_json(folder: Path, src: Sources, rng: random.Random) -> Built:
    (folder / "seed_0" / "summary.json").write_text('{"member": "seed_0", "epochs": ')
    return Built(folder, "summary.json")
