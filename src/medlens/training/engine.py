"""The training run every task shares: fit each member, let the task choose on validation, choose the default
explanation method on validation (:mod:`medlens.explanations.selection`), write the bundle.

Run folder::

    RUN_DIR/
      run.yaml, plan.yaml       # written by the train workflow
      seed_0/ or fold_0/        # best and last checkpoints, logs/ (metrics.csv: all sessions), curves.png, summary.json
      bundle/                   # every member's weights, the final plan, the operating point, the model card
      init_weights.json         # with model.init: the tensors loaded into the network and those skipped
      train_summary.json
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.outputs import write_json
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset
from medlens.data.fingerprint import load_fingerprint
from medlens.training.card import card_facts
from medlens.training.distributed import Processes, is_rank_zero
from medlens.training.members import Member, needed_cases
from medlens.training.plan import Plan

if TYPE_CHECKING:
    from medlens.tasks.base import Calibration, Task

log = logging.getLogger(__name__)


def train_members(
    task: Task,
    dataset: Dataset,
    plan: Plan,
    out: Path,
    members: list[Member],
    *,
    progress: ProgressFn | None = None,
    processes: Processes | None = None,
) -> dict[str, Any]:
    """Train every member of ``members`` into ``out/<member>``, calibrate on validation, write ``out/bundle``.

    Members that finished before (``summary.json`` present) are kept; an interrupted one resumes from its last
    checkpoint. Returns the run summary (also ``out/train_summary.json``). With ``processes`` (DDP), every process
    trains every member in step; rank 0 alone calibrates and writes the bundle, the others return ``{}``.
    """
    from medlens.models.bundle import save_bundle
    from medlens.training.finetuning import plain_weights
    from medlens.training.fitting import best_weights, fit_member
    from medlens.training.privacy import card_line, check_task, run_privacy

    if plan.model.init:  # refused before any work when it does not fit the task
        from medlens.models.checkpoints import check_init

        check_init(plan.model.init, spatial_dims=plan.spatial_dims, channels=plan.data.channels)
    check_task(task, plan)  # a private plan the task or network cannot train is refused before data is read
    prepared = task.prepare(dataset, plan, needed_cases(dataset, members), progress)
    bare = plan.without_pretrained()
    summaries: list[dict[str, Any]] = []
    states = []
    init_reports: list[Any] = []
    for member in members:
        seeded = plan.with_seed(member.seed)
        train_loader, val_loader = task.loaders(seeded, prepared, member)
        summaries.append(
            fit_member(
                lambda budget, p=seeded: initialised(task.module(p, budget), p, out, init_reports),  # type: ignore[misc]
                train_loader,
                val_loader,
                seeded,
                out / member.name,
                name=member.name,
                progress=progress,
                n_labels=len(member.train) if task.model_output == "image" else None,  # one label per image
                share=len(members),
                processes=processes,
            )
        )
        if not is_rank_zero():
            continue
        states.append(plain_weights(best_weights(out / member.name), seeded, lambda: task.build_network(bare)))
    if not is_rank_zero():
        return {}
    nets = []
    for state in states:
        net = task.build_network(bare)
        net.load_state_dict(state)
        nets.append(net.eval())
    calibration = task.calibrate(plan, nets, members, prepared)
    summary, info = run_records(dataset, plan, members, summaries, calibration)
    summary["finetune"] = summaries[0].get("finetune")
    if init_reports:
        summary["init"] = info["init"] = init_reports[0].counts()
    privacy = run_privacy(summaries, plan)
    if privacy:
        summary["privacy"] = info["privacy"] = privacy
    try:
        fingerprint = load_fingerprint(dataset.root)
    except (OSError, ValueError):  # a damaged cache: the rules fall back to their wider defaults
        fingerprint = None
    if fingerprint and isinstance(fingerprint.get("shape"), dict):  # the sizes a PACS node's series rules expect
        info["image_shape"] = {k: fingerprint["shape"][k] for k in ("min", "max") if k in fingerprint["shape"]}
    explanation = choose_explanation(task, dataset, calibration, nets, members, out / "bundle", info, progress)
    if explanation:
        summary["explanation"] = {"default": explanation["default"], "why": explanation["why"]}
    lines = task.card_lines(calibration.plan, calibration) + ([card_line(privacy)] if privacy else [])
    info["card"] = card_facts(dataset, calibration.plan, summary, lines, calibration.worst_cases)
    save_bundle(
        out / "bundle",
        calibration.plan,
        states,
        task=task,
        threshold=calibration.threshold,
        info=info,
        calibration=calibration.applied,
        explanation=explanation,
    )
    write_json(out / "train_summary.json", summary)
    return summary


def run_records(
    dataset: Dataset, plan: Plan, members: list[Member], fitted: list[dict[str, Any]], calibration: Calibration
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every run writes about its members, trained here or made from another run (:mod:`.derived`): the run
    summary (``train_summary.json``) and the bundle's ``info``, each member's best validation score in both."""
    monitor = plan.train.monitor
    scores = [f.get(f"best_{monitor}") for f in fitted]
    defined = [float(v) for v in scores if v is not None]
    key = f"val_{monitor.removeprefix('val_')}_per_member"
    kind = "folds" if members[0].name.startswith("fold_") else "seeds"
    summary: dict[str, Any] = {
        "dataset": str(dataset.root.resolve()),
        "task": plan.task,
        "members": [m.name for m in members],
        "kind": kind,
        "monitor": monitor,
        key: scores,
        "val_monitor_mean": statistics.fmean(defined) if defined else None,
        "val_monitor_sd": statistics.stdev(defined) if len(defined) > 1 else 0.0,
        "train_seconds_per_member": [f["train_seconds"] for f in fitted],
        "member_summaries": fitted,
        **calibration.summary,
    }
    info: dict[str, Any] = {
        "dataset": dataset.spec.name,
        "modality": dataset.spec.modality,
        "channels": dataset.spec.channels,
        "n_train": len({c.case_id for m in members for c in m.train}),
        "n_val": len({c.case_id for m in members for c in m.val}),
        "members": kind,
        key: scores,
        **calibration.info,
    }
    return summary, info


def initialised(module: Any, plan: Plan, out: Path, reports: list[Any]) -> Any:
    """``module`` with ``model.init`` loaded into its network (``module.net``), when the plan sets it; the first
    load's full list of loaded and skipped tensors goes to ``out/init_weights.json`` (the counts to the log and the
    run summary)."""
    if not plan.model.init:
        return module
    from medlens.models.checkpoints import load_init

    report = load_init(
        getattr(module, "net", module), plan.model.init, spatial_dims=plan.spatial_dims, channels=plan.data.channels
    )
    if not reports:
        write_json(out / "init_weights.json", report.to_dict())
    reports.append(report)
    return module


def choose_explanation(
    task: Task,
    dataset: Dataset,
    calibration: Calibration,
    nets: list[Any],
    members: list[Member],
    root: Path,
    info: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any] | None:
    """The bundle's default explanation method, scored on at most ``train.explain_images`` (by default
    ``task.explain_images``) validation cases of the first member (spread over its validation split), with the
    trained networks before the bundle is written.

    A failure here does not lose the training: the task's first method is recorded, with the reason; so is a plan
    that asks for no scoring (``train.explain_images=0``).
    """
    asked = calibration.plan.train.explain_images
    wanted = task.explain_images if asked is None else asked
    if not task.explain_methods:
        return None
    if wanted <= 0:
        why = "the task's first method: not scored on validation (train.explain_images=0)"
        return {"default": task.explain_methods[0], "why": why, "scores": {}}
    from medlens.core.errors import MedlensError
    from medlens.explanations.selection import choose_on_validation
    from medlens.models.bundle import Bundle
    from medlens.training.images import case_images

    val = list(members[0].val)
    step = max(1, len(val) // wanted)
    cases = val[::step][:wanted]
    names = [f"member_{i}.safetensors" for i in range(len(nets))]
    bundle = Bundle(
        root, calibration.plan, names, task, calibration.threshold, info, calibration=dict(calibration.applied),
        _nets=list(nets),
    )  # fmt: skip
    start = time.perf_counter()
    try:
        chosen = choose_on_validation(bundle, case_images(dataset, cases), total=len(cases), progress=progress)
        seconds = time.perf_counter() - start
        log.info("default explanation method %s, scored on %d validation case(s) in %.0f s", chosen["default"],
                 chosen["scores"]["n_images"], seconds)  # fmt: skip
        return chosen
    except (MedlensError, RuntimeError, ValueError) as exc:
        log.warning("explanation methods could not be scored on validation: %s", exc)
        why = f"the task's first method: scoring on validation failed ({type(exc).__name__}: {exc})"
        return {"default": task.explain_methods[0], "why": why[:500], "scores": {}}
