"""Which of a network's weights learn: full training, a linear probe, a partial freeze, or LoRA adapters, and
layer-wise learning-rate decay. Applied once, by the shared fitting code, to every task's network.

The plan's ``train.finetune`` says which (``auto`` lets :func:`choose_mode` decide from the labels and the
starting weights); ``train.freeze_stages``, ``train.lora_rank``/``lora_alpha`` and ``optim.layer_decay`` tune it.

A network is read as a list of *stages* from the input to the output (:func:`stages`), and a *head*: the last
layer that gives the task's answer (:func:`head_names`). timm networks say both themselves (``group_matcher``,
``pretrained_cfg["classifier"]``); others are read from their children (the stem's loose layers form stage 0, a
list of blocks gives a stage per block) with the head found by the names MONAI and torchvision give it.

LoRA comes from ``peft`` (``LoraConfig`` on every Linear and ungrouped Conv layer outside the head; the head is
trained in full). Before a bundle is written, :func:`plain_weights` merges the
adapters into the base weights (``merge_and_unload``), so a bundle needs no ``peft`` and exports as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.training.plan import OptimPlan, Plan

log = logging.getLogger(__name__)

MODES = ("full", "linear", "partial", "lora")
# The auto rule's label counts (see choose_mode for the reasons).
LINEAR_BELOW = 100
LORA_BELOW = 1000
# Names MONAI, torchvision and common networks give the layer that answers (first found wins).
HEAD_NAMES = (
    "fc",
    "classification_head",
    "class_layers",
    "classifier",
    "head",
    "out",
    "output_block",
    "deep_supervision_heads",
    "roi_heads",
)
_ADAPTER_PARTS = re.compile(r"\.(base_layer|lora_[AB]\.[^.]+)(?=\.)")
_PEFT_PREFIX = "base_model.model."
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass
class Finetuning:
    """What :func:`apply_finetuning` did: the mode and why, the parameter counts, and a Lightning callback that
    keeps the normalisation layers of frozen stages in evaluation mode (their running statistics stay too)."""

    mode: str
    why: str
    trainable: int
    total: int
    details: dict[str, Any] = field(default_factory=dict)
    callback: pl.Callback | None = None

    def report(self) -> dict[str, Any]:
        """The summary's ``finetune`` entry."""
        return {
            "mode": self.mode,
            "why": self.why,
            "trainable_parameters": self.trainable,
            "total_parameters": self.total,
            **self.details,
        }


def choose_mode(plan: Plan, n_labels: int | None) -> tuple[str, str]:
    """The fine-tuning mode of ``plan`` (``train.finetune``, or the rule when it is ``auto``) and why.

    The rule, only for a network that starts from weights (``model.pretrained`` or ``model.init``) and a task
    with one label per image (``n_labels`` given); from scratch every layer must learn, so it trains in full:

    - fewer than 100 labels: ``linear``. A head on frozen features has K x D weights, which tens of labels can
      pin down; anything more (even LoRA's ~5% of the network) fits the noise of so few. Except on a masked
      autoencoder's encoder (``pretrain --method mae``): ``full``, since MAE features are weak under a linear probe.
    - 100 to 999: ``lora``. Adapters on every layer let the features move towards the task with a few percent of
      the parameters, and keep the pretrained weights as they were (what few hundred labels can adapt).
    - 1000 and more: ``full``. Thousands of labels can adapt every weight; layer decay (``optim.layer_decay``)
      is how to keep the early layers close to where they started.
    """
    asked = plan.train.finetune
    if asked != "auto":
        return asked, "set in the plan (train.finetune)"
    start = plan.model.pretrained or plan.model.init
    if not start:
        return "full", "auto: trained from scratch (no model.pretrained or model.init), so every layer learns"
    if n_labels is None:
        return "full", (
            "auto: the labels are not one per image (a segmentation labels every voxel, a detection every box), "
            "so the rule by labelled images does not apply: every layer learns"
        )
    if n_labels < LINEAR_BELOW and _pretrained_by(plan.model.init) == "mae":
        return "full", (
            f"auto: {n_labels} labelled training images (< {LINEAR_BELOW}) on a masked-autoencoder encoder: MAE "
            "features are made to be fine-tuned, not probed (a linear head on them lost 0.15 test AUC to full "
            "fine-tuning in BENCHMARKS.md), so every layer learns"
        )
    if n_labels < LINEAR_BELOW:
        return "linear", (
            f"auto: {n_labels} labelled training images (< {LINEAR_BELOW}) on pretrained weights: a linear head on "
            "frozen features is what so few labels can fit"
        )
    if n_labels < LORA_BELOW:
        return "lora", (
            f"auto: {n_labels} labelled training images ({LINEAR_BELOW}-{LORA_BELOW - 1}) on pretrained weights: "
            "LoRA adapts every layer with a few percent of the parameters"
        )
    return "full", f"auto: {n_labels} labelled training images (>= {LORA_BELOW}): enough to adapt every weight"


def _pretrained_by(init: str | None) -> str | None:
    """The method of a ``medlens pretrain`` folder (its ``pretrain.yaml``), or None for anything else."""
    if not init or not (Path(init) / "pretrain.yaml").is_file():
        return None
    import yaml

    try:
        record = yaml.safe_load((Path(init) / "pretrain.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # model.init itself reports an unreadable folder
    return str(record.get("method")) if isinstance(record, dict) else None


def apply_finetuning(module: nn.Module, plan: Plan, n_labels: int | None = None) -> Finetuning:
    """Freeze or adapt ``module.net`` (a task's LightningModule holds its network there) as the plan says.

    In ``lora`` mode ``module.net`` is replaced by peft's wrapper of it. Returns what was done.

    Raises:
        ConfigError: naming ``train.freeze_stages`` when it freezes the whole network.
    """
    net: nn.Module = module.net  # type: ignore[assignment]
    mode, why = choose_mode(plan, n_labels)
    head = head_names(net)
    details: dict[str, Any] = {}
    if mode == "lora":
        module.net = net = lora_network(net, plan)
        details.update(lora_rank=plan.train.lora_rank, lora_alpha=plan.train.lora_alpha)
    elif mode in ("linear", "partial"):
        groups = stages(net)
        if mode == "linear":
            frozen = len(groups)
        else:
            frozen = len(groups) // 2 if plan.train.freeze_stages is None else plan.train.freeze_stages
            if frozen >= len(groups):
                raise ConfigError(
                    "train.freeze_stages",
                    f"{frozen} freezes every stage of {plan.model.name} ({len(groups)} stages before the head); "
                    "use train.finetune=linear for that",
                )
            details.update(frozen_stages=frozen, stages=len(groups))
        for prefix in [p for group in groups[:frozen] for p in group]:
            for name, p in net.named_parameters():
                if _within(name, prefix) and not any(_within(name, h) for h in head):
                    p.requires_grad_(False)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in net.parameters())
    if plan.optim.layer_decay is not None:
        details["layer_decay"] = plan.optim.layer_decay
    log.info("fine-tuning %s (%s): %d of %d parameters train", mode, why, trainable, total)
    return Finetuning(mode, why, trainable, total, details, FrozenNorms(net) if mode != "full" else None)


def lora_network(net: nn.Module, plan: Plan) -> nn.Module:
    """``net`` with peft LoRA adapters (rank ``train.lora_rank``, ``train.lora_alpha``) on every Linear and
    ungrouped Conv layer outside the head; the head trains in full, everything else is frozen.

    Left without adapters (frozen): depthwise convolutions (peft's LoRA takes none) and 1x1x1 3D convolutions
    (peft 0.21's merge of these fails on a shape mismatch).
    """
    from peft import LoraConfig, get_peft_model

    head = head_names(net)
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    targets = [
        name
        for name, m in net.named_modules()
        if isinstance(m, kinds)
        and getattr(m, "groups", 1) == 1  # peft's LoRA does not take grouped (depthwise) convolutions
        and not (isinstance(m, nn.Conv3d) and m.kernel_size == (1, 1, 1))  # peft 0.21 cannot merge these
        and not any(_within(name, h) for h in head)
    ]
    if not targets:
        raise ConfigError("train.finetune", f"lora: {plan.model.name} has no Linear or Conv layer outside its head")
    config = LoraConfig(r=plan.train.lora_rank, lora_alpha=plan.train.lora_alpha, target_modules=targets)
    wrapped = get_peft_model(net, config)
    # The head trains in full. Not through peft's modules_to_save: that matches names by suffix, so a head named
    # "out" would also take every "*.out" module inside the encoder.
    for name, p in net.named_parameters():
        if any(_within(name, h) for h in head):
            p.requires_grad_(True)
    return wrapped  # type: ignore[no-any-return]


def plain_weights(
    state: dict[str, torch.Tensor], plan: Plan, build: Callable[[], nn.Module]
) -> dict[str, torch.Tensor]:
    """The network weights of a trained member as the plain network names them: LoRA adapters merged into the
    base weights (peft's ``merge_and_unload``); other states are returned as they are.

    Args:
        state: the member's weights (``net.`` prefix already stripped).
        plan: the member's plan (rank and alpha of the adapters).
        build: builds the plain network (without pretrained weights: ``state`` holds them all).
    """
    if not any(k.startswith(_PEFT_PREFIX) for k in state):
        return state
    wrapped = lora_network(build(), plan)
    wrapped.load_state_dict(state)
    merged = wrapped.merge_and_unload()  # type: ignore[operator]
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def head_names(net: nn.Module) -> list[str]:
    """Names of the module(s) that give the network's answer (trained in every mode)."""
    net = _base(net)
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("classifier"):  # timm says where its classifier is
        names = cfg["classifier"]
        return [n for n in ([names] if isinstance(names, str) else list(names)) if _has_module(net, n)]
    children = dict(net.named_children())
    found = [n for n in HEAD_NAMES if n in children and any(True for _ in children[n].parameters())]
    if found:
        return found[:2] if set(found[:2]) == {"output_block", "deep_supervision_heads"} else found[:1]
    with_params = [n for n, m in children.items() if any(True for _ in m.parameters())]
    return with_params[-1:]


def stages(net: nn.Module) -> list[list[str]]:
    """The network's stages from input to output (module-name prefixes each), its head excluded.

    timm networks give them (``group_matcher(coarse=True)``: stem, then stages or blocks); other networks are
    read from their children: loose layers before the first block (a stem's convolution and norm) form one
    stage, and a ``ModuleList`` of blocks (as in a ViT) gives one stage per block; a network with a single
    big child (MONAI's DenseNet ``features``) is read inside it.
    """
    net = _base(net)
    head = head_names(net)
    matcher = getattr(net, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_parameters

        groups = group_parameters(net, matcher(coarse=True))
        out: list[list[str]] = []
        for _, names in sorted(groups.items()):
            plain = [_plain_name(n) for n in names]
            kept = sorted({n for n in plain if not any(_within(n, h) for h in head)}, key=plain.index)
            if kept:
                out.append(kept)  # parameter names are prefixes of themselves
        return out
    return _child_stages(net, "", head)


def _child_stages(module: nn.Module, prefix: str, head: list[str]) -> list[list[str]]:
    seen: set[int] = set()
    children = []
    for name, child in module.named_children():  # a child reached before (DynUNet's skip_layers) is skipped
        fresh = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in child.parameters())
        if f"{prefix}{name}" not in head and fresh:
            children.append((f"{prefix}{name}", child))
    own = [f"{prefix}{n}" for n, _ in module.named_parameters(recurse=False)]  # a ViT's class token, position
    if len(children) == 1 and not own and len(list(children[0][1].children())) > 1:
        return _child_stages(children[0][1], children[0][0] + ".", head)
    out: list[list[str]] = [own] if own else []
    loose = bool(own)
    for name, child in children:
        blocks = [(f"{name}.{n}", c) for n, c in child.named_children() if any(True for _ in c.parameters())]
        if isinstance(child, nn.ModuleList) and blocks:
            out += [[n] for n, _ in blocks]
            loose = False
        elif _is_layer(child) and loose:  # a loose layer next to the previous one
            out[-1].append(name)
        else:
            out.append([name])
            loose = _is_layer(child)
    return out


def layer_ids(net: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every trainable parameter of ``net`` (0 = first stage; the head and anything after the last
    stage get the deepest id) and that deepest id. LoRA adapters take the depth of the layer they adapt."""
    groups = stages(net)
    deepest = len(groups)
    ids: dict[str, int] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        plain = _plain_name(name)
        ids[name] = next((i for i, g in enumerate(groups) if any(_within(plain, q) for q in g)), deepest)
    return ids, deepest


def parameter_groups(net: nn.Module, plan: OptimPlan) -> list[dict[str, Any]]:
    """Optimiser groups of the trainable parameters: weight decay on weights only (not on norms or biases),
    and with ``plan.layer_decay`` a learning rate of ``lr * layer_decay ** (deepest - depth)`` per depth (the
    head learns at ``lr``, the first stage slowest), as in BEiT and timm's ``param_groups_layer_decay``."""
    ids, deepest = layer_ids(net) if plan.layer_decay is not None else ({}, 0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        decays = not (p.ndim <= 1 or name.endswith(".bias"))
        depth = ids.get(name, deepest)
        group = groups.get((depth, decays))
        if group is None:
            scale = plan.layer_decay ** (deepest - depth) if plan.layer_decay is not None else 1.0
            group = groups[(depth, decays)] = {
                "params": [],
                "weight_decay": plan.weight_decay if decays else 0.0,
                "lr": plan.lr * scale,
            }
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


class FrozenNorms(pl.Callback):
    """Keep normalisation layers whose weights are all frozen in evaluation mode while training, so a linear
    probe or a frozen stage also keeps its running statistics (Lightning sets every module to training mode)."""

    def __init__(self, net: nn.Module) -> None:
        self.norms = [
            m
            for m in net.modules()
            if isinstance(m, _NORMS) and (ps := list(m.parameters())) and not any(p.requires_grad for p in ps)
        ]

    def on_train_batch_start(self, *args: Any) -> None:
        for m in self.norms:
            m.eval()


def _is_layer(module: nn.Module) -> bool:
    """A single layer (no sub-modules), or one that peft wrapped with adapters."""
    return not any(True for _ in module.children()) or hasattr(module, "base_layer")


def _base(net: nn.Module) -> nn.Module:
    """The plain network inside peft's wrapper (or ``net`` itself)."""
    get = getattr(net, "get_base_model", None)
    return get() if callable(get) else net


def _plain_name(name: str) -> str:
    """A parameter's name in the plain network: peft's prefix and adapter parts removed."""
    return _ADAPTER_PARTS.sub("", name.removeprefix(_PEFT_PREFIX))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _has_module(net: nn.Module, name: str) -> bool:
    try:
        net.get_submodule(name)
    except AttributeError:
        return False
    return True


def rule_note(n_labels: int) -> str:
    """The plan's note on ``train.finetune=auto`` for ``n_labels`` labelled training images."""
    if n_labels < LINEAR_BELOW:
        pick = "linear"
    elif n_labels < LORA_BELOW:
        pick = "lora"
    else:
        pick = "full"
    return (
        f"fine-tuning auto: from scratch every layer trains (full); from model.pretrained/init the number of labelled "
        f"images decides: linear below {LINEAR_BELOW} (a head is what tens of labels can fit), lora below "
        f"{LORA_BELOW} (adapters, a few percent of the weights), full from {LORA_BELOW}: {n_labels} labels here, so "
        f"{pick} when a start is given"
    )
