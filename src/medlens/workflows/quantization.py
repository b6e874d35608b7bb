"""int8 static quantisation of an exported graph with ONNX Runtime, checked on validation before it is kept.

ONNX Runtime's ``quantize_static`` (QDQ format) is calibrated on validation inputs of the run's own dataset through
a ``CalibrationDataReader``. Two candidates are made, per-tensor and per-channel weights, and each is scored with
the task's validation metric (:meth:`medlens.tasks.base.Task.graph_check`: AUC for classification, Dice for
segmentation) and timed against the fp32 graph in the same process, one thread each, over the same inputs. The
kept candidate is the fastest of those within the tolerance (the one that loses least when none is); the export
refuses it (and writes nothing) when it loses more than ``max_drop`` unless forced.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import MedlensError
from medlens.core.progress import ProgressFn
from medlens.tasks.base import GraphCheck

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.01
CALIBRATION_BATCHES = 16  # validation batches the quantiser calibrates on (MinMax ranges)
TIMING_BATCHES = 32  # validation batches timed per graph (all of a classifier's 2048 images; a segmenter's first)


class QuantizationRefused(MedlensError):
    """The int8 graph lost more of the validation metric than allowed."""


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over validation batches (a subclass is not needed: the
    quantiser only calls ``get_next``)."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]) -> None:
        self.name, self.inputs, self.i = name, list(inputs), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.inputs):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.inputs[self.i - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantisation tools log their notes (shape inference, per-channel axes) on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with a fixed number of threads (timings comparable between graphs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(sess: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function from an input batch to the graph's first output."""
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def images_per_second(run: Callable[[np.ndarray], np.ndarray], inputs: Sequence[np.ndarray], repeats: int = 3) -> float:
    """Inputs (first axis of each batch) per second over the first :data:`TIMING_BATCHES` batches, the best of
    ``repeats`` passes after one warm-up batch (the best pass is the least disturbed by other work on the machine)."""
    inputs = inputs[:TIMING_BATCHES]
    run(inputs[0])
    n = sum(int(x.shape[0]) for x in inputs)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            run(x)
        best = min(best, time.perf_counter() - start)
    return n / max(best, 1e-9)


def quantize_graph(
    fp32: Path,
    folder: Path,
    check: GraphCheck,
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    target: Path | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Quantise ``fp32`` to int8 into ``folder`` (``model_int8.onnx``) and return its path and the record for
    ``export.json`` (``metric``, ``fp32``, ``int8``, ``throughput_ratio`` and how the graph was made); ``target``
    is the folder named in a refusal (the export's own, not the temporary one being written).

    Raises:
        QuantizationRefused: when the kept graph's metric is more than ``max_drop`` below fp32's and ``force`` is
            not given (candidate files are removed; the caller writes nothing).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not check.inputs:
        raise MedlensError(f"{fp32}: no validation inputs to calibrate the int8 graph on")
    report = progress or (lambda stage, done, total: None)
    sess_fp32 = session(fp32)
    name = sess_fp32.get_inputs()[0].name
    prepared = folder / ".model_prepared.onnx"
    try:
        with _quiet_root_logger():
            # ONNX's shape inference and ORT's graph optimisation; not ORT's symbolic shape inference, which (meant
            # for transformers) gives up on the segmenter's dynamic spatial axes and leaves a file in the working folder
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:
        log.info("ONNX Runtime's quantisation pre-processing failed (%s); quantising the exported graph", exc)
        prepared = fp32
    report("int8: fp32 metric", 0, 3)
    fp32_score = float(check.score(runner(sess_fp32)))
    fp32_speed = images_per_second(runner(sess_fp32), check.inputs)
    candidates: list[dict[str, Any]] = []
    for i, per_channel in enumerate((False, True)):
        path = folder / f".model_int8_{'per_channel' if per_channel else 'per_tensor'}.onnx"
        with _quiet_root_logger():  # ORT warns on the root logger for every 1-D weight per-channel cannot split
            quantize_static(
                str(prepared),
                str(path),
                _Reader(name, check.inputs[:CALIBRATION_BATCHES]),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        sess = session(path)
        score = float(check.score(runner(sess)))
        speed = images_per_second(runner(sess), check.inputs)
        fp32_speed = max(fp32_speed, images_per_second(runner(sess_fp32), check.inputs))  # same conditions, again
        candidates.append({"per_channel": per_channel, "path": path, "int8": score, "int8_per_second": speed})
        report("int8: candidates", i + 1, 2)
    within = [c for c in candidates if fp32_score - c["int8"] <= max_drop]
    chosen = max(within, key=lambda c: c["int8_per_second"]) if within else max(candidates, key=lambda c: c["int8"])
    drop = fp32_score - chosen["int8"]
    record = {
        "metric": check.metric,
        "fp32": fp32_score,
        "int8": chosen["int8"],
        "throughput_ratio": chosen["int8_per_second"] / fp32_speed,
        "fp32_per_second": fp32_speed,
        "int8_per_second": chosen["int8_per_second"],
        "drop": drop,
        "max_drop": max_drop,
        "forced": bool(force and drop > max_drop),
        "format": "QDQ, uint8 activations, int8 weights, MinMax calibration (onnxruntime quantize_static)",
        "per_channel": chosen["per_channel"],
        "calibration_batches": min(len(check.inputs), CALIBRATION_BATCHES),
        "validation_batches": len(check.inputs),
        "threads": 1,
        "candidates": [{k: c[k] for k in ("per_channel", "int8", "int8_per_second")} for c in candidates],
        "file": "model_int8.onnx",
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": chosen["path"].stat().st_size,
    }
    out = folder / "model_int8.onnx"
    chosen["path"].replace(out)
    for c in candidates:
        Path(c["path"]).unlink(missing_ok=True)
    if prepared != fp32:
        prepared.unlink(missing_ok=True)
    if drop > max_drop and not force:
        out.unlink(missing_ok=True)
        raise QuantizationRefused(
            f"{target or folder}: the int8 graph's validation {check.metric} is {chosen['int8']:.4f} against "
            f"{fp32_score:.4f} in fp32, a loss of {drop:.4f} > the tolerance {max_drop:g}; nothing written "
            "(--max-drop to allow more, --force to keep it anyway)"
        )
    log.info("int8 %s %.4f (fp32 %.4f), %.2fx fp32 throughput", check.metric, chosen["int8"], fp32_score,
             record["throughput_ratio"])  # fmt: skip
    return out, record
