"""The model card: one Markdown document per bundle, rendered from what the bundle records, never edited by hand.

Sections: the model; the data; validation (members, the monitor, the choices made on validation); calibration;
the default explanation and its faithfulness; held-out performance with 95% intervals and the subgroup table;
known failure modes (the worst validation and held-out cases by the task's own measure); intended use and limits.

Where each part comes from:

- ``bundle.yaml``: ``info`` (dataset, modality, case counts, members) and ``info["card"]`` (the training facts
  :func:`card_facts` gathers: validation monitor, the task's card lines, the worst validation cases);
- ``bundle.yaml``'s ``calibration`` and ``explanation`` (top level, or inside ``info``), when the calibration
  and explanation steps recorded them (see :data:`CALIBRATION_KEY`, :data:`EXPLANATION_KEY`);
- ``evaluation.json`` beside it (:func:`evaluation_record`), written by ``medlens evaluate --update-card``.

Whatever adds to those files re-renders the card with :func:`write_model_card`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medlens.data.dataset import Dataset
    from medlens.training.plan import Plan

CALIBRATION_KEY = "calibration"  # integration point: calibration facts in bundle.yaml (top level or in info)
EXPLANATION_KEY = "explanation"  # integration point: the default explanation (method, scores, why) in bundle.yaml
SUBGROUPS_KEY = "subgroups"  # integration point: the subgroup table in an evaluation's metrics.json
EVALUATION_FORMAT = "medlens-evaluation/1"
CI_LEVEL = 95
MAX_LIST = 12  # longer lists of numbers (curves, bins) are not shown in the card


def card_facts(
    dataset: Dataset, plan: Plan, summary: dict[str, Any], task_lines: list[str], worst_cases: list[dict[str, Any]]
) -> dict[str, Any]:
    """The training facts the card needs beyond the bundle's ``info`` (stored as ``info["card"]``).

    Args:
        dataset: the training dataset.
        plan: the final plan.
        summary: the run summary (members, monitor, its mean and spread).
        task_lines: the task's own lines (network, operating point, post-processing).
        worst_cases: the validation cases the model did worst on (:class:`~medlens.tasks.base.Calibration`).
    """
    return {
        "title": f"{dataset.spec.name} {plan.task}",
        "monitor": summary.get("monitor", plan.train.monitor),
        "val_monitor_mean": summary.get("val_monitor_mean"),
        "val_monitor_sd": summary.get("val_monitor_sd"),
        "n_test": len(dataset.split("test")),
        "task_lines": list(task_lines),
        "worst_val_cases": list(worst_cases),
        "finetune": summary.get("finetune"),
    }


def evaluation_record(metrics: dict[str, Any], *, n_bootstrap: int) -> dict[str, Any]:
    """What an evaluation records in a bundle (``evaluation.json``) and shows in the card: the headline metrics
    with intervals, their breakdowns (per class, per structure), calibration, subgroups and the worst cases.

    Args:
        metrics: the evaluation's ``metrics.json`` (with its ``dataset`` entry).
        n_bootstrap: resamples behind the intervals (0: none).
    """
    headline = {k: _entry(v) for k, v in metrics.items() if is_entry(v)}
    breakdowns: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if not isinstance(value, dict) or is_entry(value) or key in (CALIBRATION_KEY, SUBGROUPS_KEY):
            continue
        direct = {str(k): _entry(v) for k, v in value.items() if is_entry(v)}
        if direct:
            breakdowns[key] = direct
        for inner, node in value.items():  # one level further: per class, per metric
            if isinstance(node, dict) and not is_entry(node):
                nested = {str(k): _entry(v) for k, v in node.items() if is_entry(v)}
                if nested:
                    breakdowns[f"{key} {inner}"] = nested
    dataset = metrics.get("dataset") or {}
    return {
        "format": EVALUATION_FORMAT,
        "evaluated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset.get("name"),
        "dataset_path": dataset.get("path"),
        "split": dataset.get("split"),
        "n_cases": metrics.get("n_cases"),
        "n_bootstrap": n_bootstrap,
        "ci_level": CI_LEVEL,
        "metrics": headline,
        "breakdowns": breakdowns,
        "calibration": metrics.get(CALIBRATION_KEY),
        "subgroups": metrics.get(SUBGROUPS_KEY),
        "worst_cases": metrics.get("worst_cases") or [],
    }


def is_entry(value: Any) -> bool:
    """A metric entry: ``{"value": number, "ci95": [low, high], ...}``."""
    return isinstance(value, dict) and "value" in value and "ci95" in value


def _entry(value: dict[str, Any]) -> dict[str, Any]:
    low, high = [*list(value.get("ci95") or []), None, None][:2]
    return {"value": value.get("value"), "ci95": [low, high]}


# ---- rendering ------------------------------------------------------------------------------------------------
def render_card(spec: dict[str, Any], evaluation: dict[str, Any] | None = None) -> str:
    """The Markdown model card of a bundle.

    Args:
        spec: ``bundle.yaml`` as a mapping.
        evaluation: ``evaluation.json`` (held-out metrics), when the bundle has one.
    """
    info = spec.get("info") or {}
    facts = info.get("card") or {}
    plan = spec.get("plan") or {}
    model = plan.get("model") or {}
    data = plan.get("data") or {}
    classes = spec.get("class_names") or plan.get("class_names") or []
    title = facts.get("title") or f"{info.get('dataset', 'model')} {spec.get('task', '')}".strip()
    lines = [
        f"# Model card: {title}",
        "",
        f"- Bundle: format {spec.get('format', 'unknown')}, created {spec.get('created', 'unknown')}",
        f"- Task: {spec.get('task')}, {plan.get('spatial_dims', '?')}D, "
        + (f"classes: {', '.join(map(str, classes))}" if classes else "one continuous value"),
        f"- Network: {' '.join(str(v) for v in (model.get('name'), model.get('kwargs')) if v)}, "
        f"input {data.get('input_size')} x "
        f"{data.get('channels')} channel(s), " + _start_text(model, info),
        *_finetune_lines(facts.get("finetune")),
        "",
        "## Data",
        "",
        f"- Training data: {info.get('dataset', 'unknown')} ({info.get('modality', 'unknown modality')}), "
        f"{info.get('n_train', '?')} training and {info.get('n_val', '?')} validation cases"
        + (f"; {facts['n_test']} test case(s) held out" if facts.get("n_test") else ""),
        f"- Channels: {', '.join(map(str, info.get('channels') or [])) or 'n/a'}",
        "",
        "## Validation",
        "",
        *_validation_lines(spec, facts),
        "",
        "## Calibration",
        "",
        *_calibration_lines(spec, evaluation),
        "",
        "## Explanation",
        "",
        *_explanation_lines(spec),
        "",
        *_evaluation_lines(evaluation),
        "## Known failure modes",
        "",
        *_failure_lines(facts.get("worst_val_cases") or [], (evaluation or {}).get("worst_cases") or []),
        "",
        "## Intended use and limits",
        "",
        f"Decision support and research use for {spec.get('task')} of {info.get('modality', 'medical')} images like",
        "the training data above. Not a medical device: every output must be reviewed by a qualified clinician, who",
        "decides. Validated only on data like the training set; other scanners, protocols, sites or populations may",
        "lower its performance, and the cases listed under known failure modes show where it already fails.",
        "",
    ]
    return "\n".join(lines)


def _finetune_lines(tuning: Any) -> list[str]:
    """The fine-tuning mode and how many of the network's parameters trained (the run summary's ``finetune``)."""
    if not isinstance(tuning, dict) or not tuning.get("total_parameters"):
        return []
    trained, total = int(tuning.get("trainable_parameters") or 0), int(tuning["total_parameters"])
    return [
        f"- Fine-tuning: {tuning.get('mode')} ({tuning.get('why')}); {trained:,} of {total:,} parameters trained "
        f"({100 * trained / total:.1f}%)"
    ]


def _validation_lines(spec: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    info = spec.get("info") or {}
    monitor = str(facts.get("monitor", "monitor")).removeprefix("val_")
    mean, sd = facts.get("val_monitor_mean"), facts.get("val_monitor_sd") or 0.0
    per_member = next((v for k, v in info.items() if k.endswith("_per_member") and isinstance(v, list)), None)
    lines = [
        f"- Ensemble of {len(spec.get('members') or [])} {info.get('members', 'members')}; validation {monitor} "
        + (f"{_number(mean)} ± {_number(sd)} over members" if isinstance(mean, int | float) else "n/a")
        + (f" (per member: {', '.join(_number(v) for v in per_member)})" if per_member else ""),
        *[f"- {line}" for line in facts.get("task_lines") or []],
    ]
    if spec.get("threshold") is not None:
        lines.append(f"- Operating threshold recorded in the bundle: {_number(spec['threshold'])}")
    return lines


def _lookup(spec: dict[str, Any], key: str) -> Any:
    value = spec.get(key)
    return value if value is not None else (spec.get("info") or {}).get(key)


def _calibration_lines(spec: dict[str, Any], evaluation: dict[str, Any] | None) -> list[str]:
    lines = []
    chosen = _lookup(spec, CALIBRATION_KEY)
    if chosen:
        lines += ["Chosen on validation data:", "", *_fact_lines(chosen), ""]
    held_out = (evaluation or {}).get("calibration")
    if held_out:
        shown = _fact_lines(held_out)
        if shown:
            lines += [f"On the held-out {evaluation.get('split', '')} cases:".replace("  ", " "), "", *shown, ""]  # type: ignore[union-attr]
    if not lines:
        return ["No calibration step is recorded in this bundle: probabilities are the ensemble's mean as trained."]
    metrics = (evaluation or {}).get("metrics") or {}
    if "ece" in metrics:
        lines.append(f"- Expected calibration error (held out): {_entry_text(metrics['ece'])}")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _explanation_lines(spec: dict[str, Any]) -> list[str]:
    explanation = _lookup(spec, EXPLANATION_KEY)
    if not explanation:
        return ["No default explanation is recorded in this bundle (faithfulness not measured)."]
    if not isinstance(explanation, dict):
        return [f"- Default explanation: {explanation}"]
    method = explanation.get("default") or explanation.get("method")
    lines = [f"- Default explanation: {method}"] if method else []
    why = explanation.get("why") or explanation.get("reason")
    if why:
        lines.append(f"- Why: {why}")
    rest = {k: v for k, v in explanation.items() if k not in ("default", "method", "why", "reason")}
    scores = rest.get("scores")
    if isinstance(scores, dict) and isinstance(scores.get("methods"), dict):  # explain's faithfulness.json
        rows = {**scores["methods"], **{f"{k} (baseline)": v for k, v in (scores.get("baselines") or {}).items()}}
        columns: list[str] = []
        for figures in rows.values():
            columns += [k for k in (figures if isinstance(figures, dict) else {}) if k not in columns]
        table = [[name, *[_cell((f or {}).get(c)) for c in columns]] for name, f in rows.items()]
        lines += ["", "Faithfulness on validation:", "", *_table(["method", *columns], table)]
        rest = {k: v for k, v in rest.items() if k != "scores"}
    if rest:
        lines += ["- Faithfulness:", *[f"  {line}" for line in _fact_lines(rest)]]
    return lines


def _evaluation_lines(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return [
            "## Held-out performance",
            "",
            "Not evaluated on held-out data yet: `medlens evaluate RUN --out EVAL --update-card` measures the test",
            f"split with {CI_LEVEL}% bootstrap intervals and records it here (`evaluate` alone writes the card with",
            "its figures into EVAL/model_card.md and leaves the bundle as it is).",
            "",
            "## Subgroups",
            "",
            "No subgroup analysis is recorded (it comes with the held-out evaluation).",
            "",
        ]
    level = evaluation.get("ci_level", CI_LEVEL)
    lines = [
        "## Held-out performance",
        "",
        f"{evaluation.get('dataset')}, {evaluation.get('split')} split, {evaluation.get('n_cases')} cases, evaluated "
        f"{evaluation.get('evaluated')}; {level}% bootstrap intervals over cases ({evaluation.get('n_bootstrap')} "
        "resamples).",
        "",
        *_entry_table(evaluation.get("metrics") or {}, level),
        "",
    ]
    for name, entries in (evaluation.get("breakdowns") or {}).items():
        lines += [f"{name}:", "", *_entry_table(entries, level), ""]
    lines += ["## Subgroups", "", *_subgroup_lines(evaluation.get("subgroups")), ""]
    return lines


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *["| " + " | ".join(row) + " |" for row in rows],
    ]


def _entry_table(entries: dict[str, Any], level: int) -> list[str]:
    rows = []
    for name, entry in entries.items():
        low, high = (entry.get("ci95") or [None, None])[:2]
        ci = f"{_number(low)} – {_number(high)}" if low is not None and high is not None else "–"
        rows.append([name, _number(entry.get("value")), ci])
    return _table(["metric", "value", f"{level}% CI"], rows)


def _subgroup_lines(subgroups: Any) -> list[str]:
    """The subgroup table: the analysis of ``evaluate --by COLUMN`` (``{"column", "headline", "groups": {name:
    {"n_cases", "n_patients", "headline", "rest", "flagged", ...}}, "flagged", "rule"}``), or any list of rows or
    mapping of groups to figures."""
    if not subgroups:
        return ["No subgroup analysis is recorded in this evaluation."]
    if isinstance(subgroups, dict) and isinstance(subgroups.get("groups"), dict):
        return _analysis_lines(subgroups)
    rows: list[dict[str, Any]] = []
    if isinstance(subgroups, list):
        rows = [r if isinstance(r, dict) else {"group": r} for r in subgroups]
    elif isinstance(subgroups, dict):
        for name, value in subgroups.items():
            nested = isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
            if nested and not any(is_entry(v) for v in value.values()):
                rows += [{"subgroup": f"{name}: {group}", **figures} for group, figures in value.items()]
            elif isinstance(value, dict) and not is_entry(value):
                rows.append({"subgroup": name, **value})
            else:
                rows.append({"subgroup": name, "value": value})
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return _table(columns, [[_cell(row.get(c)) for c in columns] for row in rows])


def _analysis_lines(analysis: dict[str, Any]) -> list[str]:
    headline = analysis.get("headline", "headline")
    rows = []
    for name, group in analysis["groups"].items():
        group = group if isinstance(group, dict) else {}
        rest = group.get("rest") or {}
        counts = [_cell(group.get("n_cases")), _cell(group.get("n_patients"))]
        figures = [_cell(group.get("headline")), _cell(rest if is_entry(rest) else None)]
        rows.append([f"{analysis.get('column', 'subgroup')}: {name}", *counts, *figures, _yes(group.get("flagged"))])
    lines = [
        f"By {analysis.get('column')}" + (f" ({analysis['banding']})" if analysis.get("banding") else "")
        + f"; {headline} per subgroup against the rest of the cases.",
        "",
        *_table(["subgroup", "cases", "patients", headline, f"{headline}, the rest", "flagged"], rows),
    ]  # fmt: skip
    if analysis.get("rule"):
        lines += ["", f"Flagged: {', '.join(analysis.get('flagged') or []) or 'none'} ({analysis['rule']})."]
    return lines


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _failure_lines(validation: list[dict[str, Any]], held_out: list[dict[str, Any]]) -> list[str]:
    lines = []
    for label, cases in (("validation", validation), ("held-out", held_out)):
        if not cases:
            continue
        lines += [f"Worst {label} cases by {cases[0].get('metric', 'the task measure')}:", ""]
        extra = [k for k in cases[0] if k not in ("case_id", "metric", "value")]
        rows = [[str(c.get("case_id")), _number(c.get("value")), *[_cell(c.get(k)) for k in extra]] for c in cases]
        lines += [*_table(["case", "value", *extra], rows), ""]
    if not lines:
        return ["No per-case measurement is recorded yet (the worst cases come from validation and evaluation)."]
    return lines[:-1]


def _fact_lines(facts: Any, prefix: str = "") -> list[str]:
    """``- key: value`` lines for the scalars and metric entries of a mapping (long lists left out)."""
    if not isinstance(facts, dict):
        return [f"- {prefix or 'value'}: {_cell(facts)}"]
    lines = []
    for key, value in facts.items():
        name = f"{prefix}{key}"
        if is_entry(value):
            lines.append(f"- {name}: {_entry_text(value)}")
        elif isinstance(value, dict):
            lines += _fact_lines(value, f"{name} ")
        elif isinstance(value, list) and (len(value) > MAX_LIST or any(isinstance(v, list | dict) for v in value)):
            continue
        else:
            lines.append(f"- {name}: {_cell(value)}")
    return lines


def _entry_text(entry: dict[str, Any]) -> str:
    low, high = (entry.get("ci95") or [None, None])[:2]
    ci = f" ({CI_LEVEL}% CI {_number(low)} – {_number(high)})" if low is not None and high is not None else ""
    return f"{_number(entry.get('value'))}{ci}"


def _cell(value: Any) -> str:
    if is_entry(value):
        return _entry_text(value)
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return _number(value)
    return "–" if value is None else str(value).replace("|", "/").replace("\n", " ")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---- the card file --------------------------------------------------------------------------------------------
def write_model_card(root: Path, *, evaluation: dict[str, Any] | None = None) -> Path:
    """Render ``root/model_card.md`` again from ``root/bundle.yaml`` and ``root/evaluation.json`` (atomically).

    Args:
        root: a bundle folder.
        evaluation: the evaluation to show (default: the bundle's ``evaluation.json``, when there is one).
    """
    from medlens.core.outputs import write_text_atomic
    from medlens.models.bundle import BUNDLE_FILE, CARD_FILE, EVALUATION_FILE, read_spec

    spec = read_spec(root / BUNDLE_FILE)
    if evaluation is None and (root / EVALUATION_FILE).is_file():
        evaluation = json.loads((root / EVALUATION_FILE).read_text(encoding="utf-8"))
    path = root / CARD_FILE
    write_text_atomic(path, render_card(spec, evaluation))
    return path


def _start_text(model: dict[str, Any], info: dict[str, Any]) -> str:
    """The card's words for where training started: ``model.pretrained``, the ``model.init`` encoder (with how much
    of it was loaded), or from scratch."""
    parts = [f"from {model['pretrained']}"] if model.get("pretrained") else []
    if model.get("init"):
        counts = info.get("init") or {}
        parts.append(
            f"starting from the pretrained encoder {model['init']} ({counts.get('loaded', '?')} tensors loaded, "
            f"{counts.get('skipped', '?')} skipped; the list is in the run's init_weights.json)"
        )
    return "; ".join(parts) or "trained from scratch"
