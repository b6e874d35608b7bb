"""Clinical reports of one prediction: a JSON document, plain-language texts generated from it alone, a DICOM SR.

``predict --report`` writes, per input, ``OUT/reports/<stem>.json``::

    format, generated          # medlens-report/1, when
    input                      # source, flags (cleaned pixels, choices made for this input)
    model                      # name, task, bundle format and creation time (its version), network, classes
    findings                   # the task's findings (medlens.core.findings): probabilities and the predicted
                               # class (and referral), volumes or areas per structure, boxes with sizes, a value
    uncertainty                # the prediction's uncertainty, when calibration gave it one (else null)
    performance                # the model's validated performance with intervals (bundle's evaluation.json), or
                               # its validation figure when it was never evaluated on held-out data (else null)
    explanation                # explanation images and the bundle's default method, when present (else null)
    files                      # the prediction's files (mask, overlays, DICOM SEG), relative to OUT

and a text per language (``<stem>.en.txt``, ``<stem>.zh.txt``) rendered from that JSON only: the sentences are
data (``languages/<code>.yaml``), every number in a text is a number of the JSON printed as it is, and each text
opens with the fixed decision-support disclaimer. ``--dicom-sr`` adds ``<stem>.sr.dcm`` for DICOM input
(:mod:`medlens.io.dicom_sr`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import string
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from medlens.core.errors import ConfigError
from medlens.core.findings import REFERRAL_KEY, uncertainty_of
from medlens.core.outputs import json_text, write_text_atomic

if TYPE_CHECKING:
    from medlens.core.prediction import Prediction
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)
REPORT_FORMAT = "medlens-report/1"
REPORTS_FOLDER = "reports"
DEFAULT_LANGUAGES = ("en", "zh")
SIGNIFICANT = 4  # significant digits of performance figures in a report
EXPLANATION_ROLES = ("explanation",)  # integration point: file roles (prefixes) of explanation images
UNCERTAINTY_MAP_ROLE = "uncertainty_map"  # integration point: the file role of a voxel uncertainty map


# ---- the JSON ------------------------------------------------------------------------------------------------
def build_report(
    prediction: Prediction,
    bundle: Bundle,
    *,
    files: Mapping[str, str] | None = None,
    explanation: Any = None,
) -> dict[str, Any]:
    """The report of one prediction as JSON-ready data.

    Args:
        prediction: what ``bundle.predict`` said about one input.
        bundle: the model that said it.
        files: the prediction's files by role (what :meth:`Prediction.save` returned), relative to the output.
        explanation: an explanation of this prediction (a mapping or an object with ``method`` and ``paths``
            or ``images``), when one was made; else the prediction's own ``explanation`` attribute, if any.

    Example:
        >>> report = build_report(bundle.predict("case.nii.gz"), bundle)  # doctest: +SKIP
        >>> [f["value"] for f in report["findings"] if f["kind"] == "volume"]  # doctest: +SKIP
        [1.912, 1.714]
    """
    files = dict(files or {})
    return {
        "format": REPORT_FORMAT,
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {"source": prediction.source, "flags": list(prediction.flags)},
        "model": model_section(bundle),
        "findings": bundle.task.findings(prediction, bundle),
        "uncertainty": uncertainty_section(prediction, files),
        "performance": performance_section(bundle),
        "explanation": explanation_section(bundle, prediction, files, explanation),
        "files": files,
    }


def uncertainty_section(prediction: Prediction, files: Mapping[str, str]) -> dict[str, Any] | None:
    """The prediction's uncertainty (:func:`medlens.core.findings.uncertainty_of`), its numbers rounded to
    :data:`SIGNIFICANT` digits, with the voxel uncertainty map's file (``map``) when one was written."""
    found = uncertainty_of(prediction) or {}
    if UNCERTAINTY_MAP_ROLE in files:
        found["map"] = files[UNCERTAINTY_MAP_ROLE]
    return {k: _rounded(v) for k, v in found.items()} or None


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def model_section(bundle: Bundle) -> dict[str, Any]:
    """Name, task, version (the bundle's format and creation time), network, members, classes, training data."""
    spec = bundle.spec()
    info = bundle.info
    return {
        "name": bundle.name,
        "task": bundle.plan.task,
        "format": spec.get("format", "unknown"),
        "created": str(spec.get("created", "unknown")),
        "network": bundle.plan.model.name,
        "members": len(bundle.members),
        "classes": list(bundle.class_names),
        "training_data": info.get("dataset"),
        "modality": info.get("modality"),
    }


def significant(value: float, digits: int = SIGNIFICANT) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value)))) + 0.0


def performance_section(bundle: Bundle) -> dict[str, Any] | None:
    """The model's validated performance: the held-out evaluation recorded in the bundle (``evaluate
    --update-card``) with its intervals; else the validation figure of training, without an interval; else None."""
    evaluation = bundle.evaluation()
    if evaluation:
        metrics = []
        for name, entry in (evaluation.get("metrics") or {}).items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            low, high = ((entry.get("ci95") or []) + [None, None])[:2]
            defined = all(isinstance(v, int | float) and math.isfinite(v) for v in (low, high))
            metrics.append(
                {"name": name, "value": significant(value), "low": significant(low) if defined else None,
                 "high": significant(high) if defined else None}
            )  # fmt: skip
        return {
            "source": "held_out",
            "dataset": evaluation.get("dataset"),
            "split": evaluation.get("split"),
            "n_cases": evaluation.get("n_cases"),
            "ci_level": evaluation.get("ci_level", 95),
            "evaluated": evaluation.get("evaluated"),
            "metrics": metrics,
        }
    card = bundle.info.get("card") or {}
    mean = card.get("val_monitor_mean")
    if isinstance(mean, int | float) and math.isfinite(mean):
        monitor = str(card.get("monitor", "monitor")).removeprefix("val_")
        return {
            "source": "validation",
            "dataset": bundle.info.get("dataset"),
            "split": "val",
            "n_cases": bundle.info.get("n_val"),
            "ci_level": None,
            "metrics": [{"name": monitor, "value": significant(mean), "low": None, "high": None}],
        }
    return None


def _field(source: Any, *names: str) -> Any:
    for name in names:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value is not None:
            return value
    return None


def explanation_section(
    bundle: Bundle, prediction: Prediction, files: Mapping[str, str], explanation: Any = None
) -> dict[str, Any] | None:
    """Explanation images of this prediction and the bundle's default explanation method, when present.

    Integration points: the explanation given (or the prediction's ``explanation`` attribute) is read for
    ``method`` and ``paths`` / ``images`` / ``files`` (a list, or files by role as ``Explanation.save`` returns
    them, its JSON left out); the prediction's files whose role starts with one of
    :data:`EXPLANATION_ROLES` are explanation images too; the bundle's default method is ``bundle.yaml``'s
    ``explanation`` (``default`` or ``method``), as the model card reads it.
    """
    from medlens.training.card import EXPLANATION_KEY

    given = explanation if explanation is not None else getattr(prediction, "explanation", None)
    found = _field(given, "paths", "images", "files") if given is not None else None
    if isinstance(found, Mapping):  # files by role, as Explanation.save returns them: the pictures
        found = [name for role, name in found.items() if role != "json"]
    images = [str(p) for p in found or []]
    images += [name for role, name in files.items() if role.startswith(EXPLANATION_ROLES) and name not in images]
    spec = bundle.spec()
    recorded = spec.get(EXPLANATION_KEY) or bundle.info.get(EXPLANATION_KEY)
    default = _field(recorded, "default", "method") if isinstance(recorded, Mapping) else recorded
    method = _field(given, "method") if given is not None else None
    if not images and default is None:
        return None
    return {"method": None if method is None else str(method), "images": images,
            "default": None if default is None else str(default)}  # fmt: skip


# ---- the texts -----------------------------------------------------------------------------------------------
def known_languages() -> list[str]:
    """The languages with a sentence file (``languages/<code>.yaml``)."""
    folder = resources.files("medlens.reports") / "languages"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def parse_languages(text: str | Sequence[str]) -> list[str]:
    """``"en,zh"`` (or a list) as language codes, each checked.

    Raises:
        ConfigError: for an unknown language, listing the known ones.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    codes = [c.strip().lower() for c in items if c.strip()]
    known = known_languages()
    unknown = [c for c in codes if c not in known]
    if unknown or not codes:
        what = f"unknown language {unknown[0]!r}" if unknown else "no language given"
        raise ConfigError("--lang", f"{what} (known: {', '.join(known)})")
    return list(dict.fromkeys(codes))


@cache
def sentences(language: str) -> dict[str, Any]:
    """The sentence file of ``language``."""
    if language not in known_languages():
        raise ConfigError("--lang", f"unknown language {language!r} (known: {', '.join(known_languages())})")
    text = (resources.files("medlens.reports") / "languages" / f"{language}.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def render_text(report: Mapping[str, Any], language: str) -> str:
    """The plain-language text of a report, from the report alone: the disclaimer, then one sentence per fact.

    Example:
        >>> print(render_text(report, "en"))  # doctest: +SKIP
        DECISION SUPPORT ONLY. ...
    """
    lang = sentences(language)
    say = _Sentences(lang)
    model, source = report["model"], report["input"]
    lines = [lang["disclaimer"], "", say.one(lang["header"], {**model, "model": model["name"], **source})]
    lines += [say.one(lang["flag"], {"flag": flag}) for flag in source.get("flags") or []]
    lines += ["", lang["sections"]["findings"]]
    lines += [say.one(lang["findings"][f["kind"]], f) for f in report["findings"] if f["kind"] in lang["findings"]]
    uncertainty = {k: v for k, v in (report.get("uncertainty") or {}).items() if k != REFERRAL_KEY}
    if uncertainty:
        lines += ["", lang["sections"]["uncertainty"]]
        templates = lang["uncertainty"]
        for name, value in uncertainty.items():
            if isinstance(value, Mapping):
                continue  # nested details stay in the JSON
            lines.append(say.one(templates.get(name, templates["other"]), {"name": name, "value": value}))
    lines += ["", lang["sections"]["performance"], *_performance_lines(report.get("performance"), lang, say)]
    explanation = report.get("explanation")
    if explanation:
        lines += ["", lang["sections"]["explanation"]]
        if explanation.get("images"):
            lines.append(say.one(lang["explanation"]["images"], explanation))
        if explanation.get("default"):
            lines.append(say.one(lang["explanation"]["faithfulness"], explanation))
    return "\n".join(line for line in lines if line is not None) + "\n"


def _performance_lines(performance: Mapping[str, Any] | None, lang: dict[str, Any], say: _Sentences) -> list[str]:
    templates = lang["performance"]
    if not performance or not performance.get("metrics"):
        return [templates["missing"]]
    intro = templates["held_out"] if performance.get("source") == "held_out" else templates["validation"]
    names = lang.get("metric_names") or {}
    lines = [say.one(intro, performance)]
    for entry in performance["metrics"]:
        context = {**entry, "metric": names.get(entry["name"], entry["name"]), "ci_level": performance.get("ci_level")}
        lines.append(say.one(templates["metric"], context))
    return lines


class _Sentences:
    """Fills sentence templates of one language with values of the report, printed exactly as they are."""

    TRANSLATED: ClassVar[dict[str, str]] = {"unit": "units", "task": "tasks", "split": "splits"}  # words translated

    def __init__(self, lang: Mapping[str, Any]) -> None:
        self.lang = lang

    def one(self, templates: Any, values: Mapping[str, Any]) -> str:
        """The first template whose placeholders all have values (a mapping with ``by``: chosen by that value)."""
        if isinstance(templates, Mapping):
            key = str(values.get(templates["by"])).lower()
            return str(templates[key])
        options = [templates] if isinstance(templates, str) else list(templates)
        for template in options:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
            if all(self._has(values, f) for f in fields):
                return template.format_map({f: self.show(f, values[f]) for f in fields})
        raise ConfigError("sentences", f"no sentence fits {dict(values)} among {options}")

    @staticmethod
    def _has(values: Mapping[str, Any], name: str) -> bool:
        return name in values and values[name] is not None and values[name] != ""

    def show(self, name: str, value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return show_number(value)
        if isinstance(value, list):
            if not value:
                return str(self.lang["none"])
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                return "[" + ", ".join(show_number(v) for v in value) + "]"
            return str(self.lang["list_separator"]).join(self.show(name, v) for v in value)
        text = str(value)
        table = self.lang.get(self.TRANSLATED.get(name, ""), {}) or {}
        return str(table.get(text, text))


def show_number(value: float) -> str:
    """A number as the JSON holds it (integral floats without their ``.0``)."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# ---- the files -----------------------------------------------------------------------------------------------
def write_reports(
    prediction: Prediction,
    bundle: Bundle,
    folder: Path,
    stem: str,
    files: Mapping[str, str],
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    dicom_sr: bool = False,
    explanation: Any = None,
) -> dict[str, str]:
    """Write ``folder/reports/<stem>.json``, a text per language and (``dicom_sr``, DICOM input) ``<stem>.sr.dcm``.

    Args:
        prediction: the prediction.
        bundle: its model.
        folder: the prediction output folder (``files`` are relative to it).
        stem: the input's name in the output.
        files: the prediction's files by role.
        languages: language codes of the texts (see :func:`known_languages`).
        dicom_sr: also write a DICOM SR (for DICOM input; a segmentation's SR references its DICOM SEG, which must
            be among ``files`` as ``dicom_seg``).
        explanation: an explanation of this prediction, when one was made (see :func:`build_report`).

    Returns:
        The files written by role (``report``, ``report_<lang>``, ``dicom_sr``), relative to ``folder``.
    """
    out = folder / REPORTS_FOLDER
    out.mkdir(exist_ok=True)
    report = build_report(prediction, bundle, files=files, explanation=explanation)
    written = {"report": f"{REPORTS_FOLDER}/{stem}.json"}
    write_text_atomic(out / f"{stem}.json", json_text(report) + "\n")
    for language in languages:
        write_text_atomic(out / f"{stem}.{language}.txt", render_text(report, language))
        written[f"report_{language}"] = f"{REPORTS_FOLDER}/{stem}.{language}.txt"
    if dicom_sr:
        sr = _write_sr(report, prediction, folder, out / f"{stem}.sr.dcm")
        if sr is not None:
            written["dicom_sr"] = f"{REPORTS_FOLDER}/{sr.name}"
    return written


def _write_sr(report: Mapping[str, Any], prediction: Prediction, folder: Path, path: Path) -> Path | None:
    from medlens.io.dicom_sr import dicom_sources, write_dicom_sr

    sources = dicom_sources(Path(prediction.source))
    if not sources:
        log.warning("%s: a DICOM SR needs DICOM input (a file, or one series' folder); not written", prediction.source)
        return None
    seg = report["files"].get("dicom_seg")
    if seg is None and any(f["kind"] == "volume" for f in report["findings"]):
        log.warning("%s: no DICOM SEG for the volumes to reference; DICOM SR not written", prediction.source)
        return None
    model = report["model"]
    return write_dicom_sr(
        report["findings"], sources, path, segmentation=folder / seg if seg else None,
        algorithm=str(model["name"]), version=f"{model['format']} {model['created']}",
    )  # fmt: skip
