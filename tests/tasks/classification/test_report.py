"""The HTML report: written whole, self-contained, valid, with every plot and metric in it."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from medlens.tasks.classification.metrics import classification_metrics
from medlens.tasks.classification.report import write_classification_report
from prediction_cases import make_case

PLOTS = ("roc", "pr", "reliability", "confusion")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Balanced tags, and every resource reference (src, href) local to the page."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.references: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _write(task: str, kind: str, out: Path, names: list[str], **context) -> tuple[str, dict]:
    y, p = make_case(task, kind, n=200, seed=4, k=len(names))
    threshold = 0.4 if task == "binary" else None
    metrics = classification_metrics(y, p, task=task, class_names=names, threshold=threshold, n_bootstrap=50)
    path = write_classification_report(
        metrics, y, p, out, title=f"{task} test set", task=task, class_names=names, context=context or None
    )
    assert path == out / "report.html"
    return path.read_text(encoding="utf-8"), metrics


@pytest.mark.parametrize(
    ("task", "names"),
    [("binary", ["normal", "pneumonia"]), ("multiclass", ["a", "b", "c", "d"]), ("multilabel", list("wxyz"))],
)
def test_report_is_self_contained_valid_and_complete(tmp_path: Path, task: str, names: list[str]) -> None:
    html, metrics = _write(
        task, "random", tmp_path / "eval", names, model="resnet18", plan={"batch_size": 64}, seeds=[0, 1, 2]
    )
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert {"html", "head", "body", "title", "table", "img"} <= checker.tags
    assert not {"script", "link", "iframe", "object"} & checker.tags
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in checker.references)
    assert not re.search(r"https?://|url\(", html)

    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(PLOTS)
    for key, data in zip(PLOTS, embedded, strict=True):
        png = (tmp_path / "eval" / f"{key}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and base64.b64decode(data) == png

    for label in (
        "ROC AUC",
        "accuracy",
        "balanced accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "F1",
        "average precision",
        "expected calibration error",
        "MedMNIST protocol",
        "resnet18",
        "seeds",
    ):
        assert label in html, label
    assert f"{metrics['auc']['value']:.3f}" in html
    assert all(name in html for name in names)
    if task == "binary":
        assert "threshold 0.400 (validation)" in html
    assert not list((tmp_path / "eval").glob("*.partial"))


def test_report_escapes_names_and_survives_undefined_metrics(tmp_path: Path) -> None:
    html, metrics = _write("binary", "missing_class", tmp_path, ["<b>no</b>", "yes & maybe"])
    assert metrics["auc"]["value"] is None
    assert "<b>no</b>" not in html and "&lt;b&gt;no&lt;/b&gt;" in html and "yes &amp; maybe" in html
    assert "n/a" in html and "only one class present" in html
    assert all((tmp_path / f"{key}.png").stat().st_size > 0 for key in PLOTS)


def test_report_replaces_an_earlier_one(tmp_path: Path) -> None:
    first, _ = _write("binary", "random", tmp_path, ["a", "b"], run="first")
    second, _ = _write("binary", "random", tmp_path, ["a", "b"], run="second")
    assert "first" in first and "second" in second and "first" not in second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"{k}.png" for k in PLOTS), "report.html"])


def test_report_multilabel_with_many_labels(tmp_path: Path) -> None:
    names = [f"finding {i}" for i in range(14)]
    y, p = make_case("multilabel", "random", n=120, seed=1, k=14)
    metrics = classification_metrics(y, p, task="multilabel", class_names=names, n_bootstrap=0)
    path = write_classification_report(
        metrics, y, p, tmp_path, title="ChestMNIST-like", task="multilabel", class_names=names
    )
    assert "finding 13" in path.read_text(encoding="utf-8")
    assert np.isfinite(metrics["auc"]["value"])
