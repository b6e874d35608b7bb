"""Where an int8 ONNX graph spends its time, per operator type, against its fp32 graph (ONNX Runtime's profiler,
one thread). Written for the Hippocampus segmenter's int8 ratio (issue 13): which operators the int8 graph speeds
up and which it does not.

    flock /work/bench.lock .venv/bin/python benchmarks/int8_profile.py benchmarks/work/compression/segmenter/onnx

Reads ``model.onnx`` and ``model_int8.onnx`` of an ``export --quantize int8`` folder; inputs are random patches of
the graph's input shape (timing does not depend on the values). ``--variants`` also quantises ``model.onnx`` in
other ways ONNX Runtime offers (convolutions only, QOperator format, per-tensor weights; calibrated on the same
random inputs, for timing only) and times each against fp32. Results: ``results/int8_profile_<part>_<folder>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent


def profile(path: Path, inputs: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Seconds per input, and the share of kernel time per operator type."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as work:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for x in inputs:  # warm-up
            session.run(None, {name: x})
        start = time.perf_counter()
        for _ in range(repeats):
            for x in inputs:
                session.run(None, {name: x})
        seconds = (time.perf_counter() - start) / (repeats * len(inputs))
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {
        "seconds_per_input": seconds,
        "kernel_share": {op: round(t / total, 4) for op, t in per_op.most_common()},
        "kernel_microseconds": dict(per_op.most_common()),
    }


def variants(fp32: Path, inputs: list[np.ndarray], repeats: int) -> dict[str, float]:
    """Throughput over fp32 of other quantisations of ``fp32`` (each timed right after fp32 again)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(fp32)).get_inputs()[0].name

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter([{name: x} for x in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    options = {
        "QDQ per-channel (export's)": {"quant_format": QuantFormat.QDQ, "per_channel": True},
        "QDQ per-tensor": {"quant_format": QuantFormat.QDQ, "per_channel": False},
        "QDQ convolutions only": {
            "quant_format": QuantFormat.QDQ,
            "per_channel": True,
            "op_types_to_quantize": ["Conv"],
        },
        "QOperator per-channel": {"quant_format": QuantFormat.QOperator, "per_channel": True},
    }
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        for label, kwargs in options.items():
            path = Path(work) / "variant.onnx"
            quantize_static(str(prepared), str(path), Reader(), activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, **kwargs)  # fmt: skip
            base = profile(fp32, inputs, repeats)["seconds_per_input"]
            out[label] = round(base / profile(path, inputs, repeats)["seconds_per_input"], 3)
            print(label, out[label], flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="an 'export --quantize int8' folder")
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also time other ways of quantising model.onnx")
    args = parser.parse_args()
    fp32, int8 = args.folder / "model.onnx", args.folder / "model_int8.onnx"
    record = json.loads((args.folder / "export.json").read_text())
    shape = record["inputs"][0]["example_shape"]  # the export's own example (a patch for a segmenter)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=shape).astype(np.float32) for _ in range(args.inputs)]
    result: dict[str, Any] = {"folder": str(args.folder), "input_shape": list(shape)}
    result["fp32"] = profile(fp32, inputs, args.repeats)
    result["int8"] = profile(int8, inputs, args.repeats)
    result["throughput_ratio"] = result["fp32"]["seconds_per_input"] / result["int8"]["seconds_per_input"]
    conv32 = result["fp32"]["kernel_microseconds"].get("Conv", 0)
    conv8 = result["int8"]["kernel_microseconds"].get("QLinearConv", 0)
    result["conv_speedup"] = conv32 / conv8 if conv8 else None  # fp32 Conv time over int8 QLinearConv time
    if args.variants:
        result["variants"] = variants(fp32, inputs, args.repeats)
    result["machine"] = f"{platform.node()} {os.cpu_count()} cores, one ONNX Runtime thread"
    result["command"] = f".venv/bin/python benchmarks/int8_profile.py {args.folder}" + (
        " --variants" if args.variants else ""
    )
    out = ROOT / "results" / f"int8_profile_{args.folder.parent.name}_{args.folder.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("input_shape", "throughput_ratio", "conv_speedup")}))
    for kind in ("fp32", "int8"):
        print(kind, {k: v for k, v in list(result[kind]["kernel_share"].items())[:6]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
