"""``medlens predict ... --ray [ADDRESS]``: the option takes an address, or none (a local Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import medlens.workflows.batch_prediction as batch_prediction
import medlens.workflows.prediction as prediction
from medlens.cli.main import main


@pytest.mark.parametrize(
    ("where", "address"), [(["--ray"], "local"), (["--ray", "10.0.0.5:6379"], "10.0.0.5:6379"), ([], None)]
)
def test_ray_option_value_is_optional(
    where: list[str], address: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: dict[str, Any] = {}

    def fake(run_dir: Any, inputs: Any, out: Any, **options: Any) -> batch_prediction.PredictionRun:
        called.update(options, inputs=inputs)
        return batch_prediction.PredictionRun(Path(out))

    monkeypatch.setattr(batch_prediction, "predict_on_ray", fake)
    monkeypatch.setattr(prediction, "predict", lambda *args, **options: called.update(single=True) or fake(*args))
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    args = ["-q", "predict", str(tmp_path / "run"), str(image), *where, "--out", str(tmp_path / "out")]
    code = main(args)
    assert code == 0
    if address is None:
        assert called["single"] and "address" not in called  # without --ray: the single-process predict
    else:
        assert called["address"] == address and called["inputs"] == [image]
