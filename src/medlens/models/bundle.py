"""The bundle: everything ``predict``, ``explain``, ``export`` and ``serve`` need, and nothing else.

Layout::

    bundle/
      bundle.yaml          # task, classes, the plan (preprocessing + network), members, operating threshold
      member_0.safetensors # weights of each trained seed (or fold); predictions average their probabilities
      model_card.md        # data, metrics with confidence intervals, intended use, limits
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import InputError
from medlens.plan.schema import Plan

BUNDLE_FILE = "bundle.yaml"


@dataclass
class Bundle:
    root: Path
    plan: Plan
    members: list[str]
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _nets: list[nn.Module] = field(default_factory=list, repr=False)

    @property
    def class_names(self) -> list[str]:
        return self.plan.class_names

    def networks(self) -> list[nn.Module]:
        """The member networks in eval mode (built and loaded once)."""
        if not self._nets:
            from safetensors.torch import load_file

            build_network = network_builder(self.plan.task)
            plan = self.plan.model_copy(update={"model": self.plan.model.model_copy(update={"pretrained": None})})
            for member in self.members:
                net = build_network(plan)
                net.load_state_dict(load_file(str(self.root / member)))
                self._nets.append(net.eval())
        return self._nets

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities for prepared, not yet normalised inputs (N, C, *size).

        Returns:
            The ensemble mean (N, K) and each member's probabilities (M, N, K).
        """
        from medlens.tasks.classification import probabilities
        from medlens.transforms.preprocess import normalize

        per_member = []
        for net in self.networks():
            chunks = [
                probabilities(net(normalize(x[i : i + batch_size], self.plan.data)).float(), self.plan.task)
                for i in range(0, len(x), batch_size)
            ]
            per_member.append(torch.cat(chunks).numpy())
        stacked = np.stack(per_member)
        return stacked.mean(axis=0), stacked


def network_builder(task: str) -> Any:
    """The function that builds a task's network from a plan (``tasks/<task>.py: build_network``)."""
    if task == "segmentation":
        from medlens.tasks.segmentation import build_network as seg

        return seg
    if task == "detection":
        from medlens.tasks.detection import build_network as det

        return det
    from medlens.tasks.classification import build_network as cls

    return cls


def save_bundle(
    root: Path,
    plan: Plan,
    weights: list[dict[str, torch.Tensor]],
    *,
    threshold: float | None,
    info: dict[str, Any],
    card: str,
) -> Bundle:
    """Write a bundle folder (weights as safetensors, the spec as YAML, the model card as Markdown)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    members = []
    for i, state in enumerate(weights):
        name = f"member_{i}.safetensors"
        tmp = root / f".{name}.partial"
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(root / name)
        members.append(name)
    spec = {
        "format": "medlens-bundle/1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": plan.task,
        "class_names": plan.class_names,
        "threshold": threshold,
        "members": members,
        "info": info,
        "plan": plan.model_dump(),
    }
    write_text_atomic(root / BUNDLE_FILE, yaml.safe_dump(spec, sort_keys=False))
    write_text_atomic(root / "model_card.md", card)
    return Bundle(root, plan, members, threshold, info)


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle from its folder, or from a run folder holding ``bundle/``."""
    path = Path(path)
    root = path / "bundle" if (path / "bundle" / BUNDLE_FILE).is_file() else path
    spec_path = root / BUNDLE_FILE
    if not spec_path.is_file():
        raise InputError(path, "no trained model here (neither bundle.yaml nor bundle/bundle.yaml); train first")
    spec = yaml.safe_load(spec_path.read_text())
    from medlens.plan.overrides import validate_plan

    plan = validate_plan(spec["plan"], source=str(spec_path))
    for member in spec["members"]:
        if not (root / member).is_file():
            raise InputError(root / member, "bundle member weights missing")
    return Bundle(root, plan, list(spec["members"]), spec.get("threshold"), dict(spec.get("info") or {}))
