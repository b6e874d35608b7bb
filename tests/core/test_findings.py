"""The one accessor of a prediction's uncertainty, read from stand-ins shaped like calibration's predictions: the
numbers under ``uncertainty`` in ``to_dict()``, the referral flag and the conformal set beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medlens.core.findings import referral_of, uncertainty_of
from medlens.core.prediction import Prediction


@dataclass(kw_only=True)
class Calibrated(Prediction):
    """A stand-in for a calibrated prediction: ``refer`` and ``prediction_set``, numbers under ``uncertainty``."""

    refer: bool = False
    prediction_set: list[str] | None = None
    numbers: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        return {"refer": self.refer, "prediction_set": self.prediction_set, "uncertainty": self.numbers}


def test_uncertainty_joins_the_referral_and_the_set() -> None:
    p = Calibrated(model="m", source="x", refer=True, prediction_set=["a", "b"],
                   numbers={"entropy": 0.61, "referral_threshold": 0.8, "conformal_level": None})  # fmt: skip
    expected = {"entropy": 0.61, "referral_threshold": 0.8, "refer": True, "prediction_set": ["a", "b"]}
    assert uncertainty_of(p) == expected
    assert referral_of(uncertainty_of(p)) is True


def test_no_referral_is_not_the_same_as_not_assessed() -> None:
    assessed = Calibrated(model="m", source="x", refer=False, numbers={"referral_threshold": 0.8})
    assert referral_of(uncertainty_of(assessed)) is False
    unable = Calibrated(model="m", source="x", refer=False, numbers={"referral_threshold": None})  # an older bundle
    assert referral_of(uncertainty_of(unable)) is None
    assert "refer" not in (uncertainty_of(unable) or {})
    assert uncertainty_of(Prediction(model="m", source="x")) is None and referral_of(None) is None


def test_an_uncertainty_attribute_comes_first() -> None:
    p = Calibrated(model="m", source="x", numbers={"entropy": 1.0})
    p.uncertainty = {"entropy": 0.5}  # type: ignore[attr-defined]
    assert uncertainty_of(p) == {"entropy": 0.5}  # and a False flag without a known cut is not an assessment
