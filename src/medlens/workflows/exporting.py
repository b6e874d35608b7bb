"""Export a bundle to ONNX: one ``model.onnx`` holding every member, and ``export.json`` saying how to feed it.

What the graph holds is the task's choice (:meth:`medlens.tasks.base.Task.export_graph`), so that ONNX Runtime
users write as little as possible by hand. The export is checked: ONNX Runtime and PyTorch run the same inputs
and must agree within the task's tolerance (``verification`` in ``export.json``), else nothing is written.
torch's TorchScript-based exporter is used (``dynamo=False``): torchvision's detectors, with their
data-dependent NMS, export through it, and it needs no onnxscript.

With ``quantize="int8"`` an int8 graph (``model_int8.onnx``) is written beside the fp32 one, calibrated and scored on
the run's validation cases (:mod:`medlens.workflows.quantization`); ``export.json`` records both graphs' validation
metric and the int8 throughput over fp32's under ``quantization``, and the export is refused (nothing written) when
the int8 graph loses more than ``max_drop`` unless ``force``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.errors import ConfigError, MedlensError
from medlens.core.outputs import output_folder, write_json
from medlens.core.progress import ProgressFn
from medlens.tasks.base import Graph, load_bundle

log = logging.getLogger(__name__)
OPSET = 17


def export_onnx(
    run_dir: str | Path,
    out: str | Path,
    *,
    opset: int = OPSET,
    overwrite: bool = False,
    quantize: str | None = None,
    max_drop: float | None = None,
    force: bool = False,
    dataset: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``out/model.onnx`` and ``out/export.json`` for the bundle in ``run_dir``; return the export spec.

    Args:
        run_dir: a run folder or a bundle folder.
        out: the folder to create.
        opset: the ONNX opset.
        overwrite: replace an existing output folder that medlens made.
        quantize: ``int8`` to also write ``model_int8.onnx`` (ONNX Runtime static quantisation, calibrated on
            validation images of the run's dataset).
        max_drop: the largest loss of the validation metric the int8 graph may have (default 0.01).
        force: write the int8 graph even when it loses more than ``max_drop``.
        dataset: the dataset whose validation split calibrates and scores the int8 graph (default: the run's).
        progress: reports the quantisation's steps.

    Example:
        >>> import medlens
        >>> spec = medlens.export_onnx("runs/bccd", "exports/bccd")  # doctest: +SKIP
        >>> spec["inputs"][0]["name"]  # doctest: +SKIP
        'image'
    """
    from medlens.workflows.quantization import DEFAULT_MAX_DROP

    if quantize not in (None, "int8"):
        raise ConfigError("--quantize", f"{quantize!r} is not a known quantisation (int8)")
    bundle = load_bundle(run_dir)
    check = _graph_check(bundle, run_dir, dataset) if quantize else None
    graph = bundle.task.export_graph(bundle)
    graph.module.eval()
    with (
        output_folder(out, kind="export", overwrite=overwrite, inputs=[("run folder", Path(run_dir))]) as tmp,
        torch.inference_mode(False),
        torch.no_grad(),
    ):
        path = tmp / "model.onnx"
        dynamic = {k: dict(v) for k, v in graph.dynamic_axes.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in torchvision's code
            torch.onnx.export(
                graph.module, (graph.example,), str(path), dynamo=False, opset_version=opset,
                input_names=[graph.input_name], output_names=graph.output_names, dynamic_axes=dynamic,
            )  # fmt: skip
        verification = verify(path, graph)
        spec = {
            "format": "medlens-onnx/1",
            "task": bundle.plan.task,
            "class_names": bundle.class_names,
            "opset": opset,
            "members": len(bundle.members),
            "inputs": [
                {
                    "name": graph.input_name,
                    "shape": graph.input_shape,
                    "dtype": "float32",
                    "meaning": graph.input_meaning,
                    "example_shape": list(graph.example.shape),
                }
            ],
            "outputs": graph.output_names,
            "preprocessing": graph.preprocessing,
            "verification": verification,
            "bundle": str(bundle.root.resolve()),
        }
        if check is not None:
            from medlens.workflows.quantization import quantize_graph

            limit = DEFAULT_MAX_DROP if max_drop is None else max_drop
            _, spec["quantization"] = quantize_graph(
                path, tmp, check, max_drop=limit, force=force, target=Path(out), progress=progress
            )  # raises (and the folder is not written) when the int8 graph loses too much
        write_json(tmp / "export.json", spec)
    log.info("exported %s (%d member(s)) to %s", bundle.plan.task, len(bundle.members), Path(out) / "model.onnx")
    return spec


def _graph_check(bundle: Any, run_dir: str | Path, dataset: str | Path | None) -> Any:
    """The task's validation check of its graph, on the validation split of ``dataset`` (default: the run's)."""
    from medlens.data.dataset import load_dataset
    from medlens.workflows.evaluation import run_dataset

    data = load_dataset(dataset if dataset is not None else run_dataset(Path(run_dir)))
    cases = data.split("val")
    if not cases:
        raise MedlensError(f"{data.root}: no validation cases to calibrate and score the int8 graph on")
    return bundle.task.graph_check(bundle, data, cases)


def verify(path: Path, graph: Graph) -> dict[str, Any]:
    """Run ONNX Runtime and PyTorch on the example (and on further inputs where axes are dynamic)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checks = []
    for x in [graph.example, *graph.more_examples]:
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            want = graph.module(x)
        wanted = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        check: dict[str, Any] = {"input_shape": list(x.shape)}
        for name, g, w in zip(graph.output_names, got, wanted, strict=True):
            if g.shape != w.shape:
                raise MedlensError(f"{path}: ONNX output {name} has shape {g.shape}, PyTorch {w.shape}")
            diff = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if g.size else 0.0
            check[f"max_abs_diff_{name}"] = diff
            if diff > graph.tolerance.get(name, 0.0):
                raise MedlensError(f"{path}: ONNX and PyTorch {name} differ by {diff:g} on input {list(x.shape)}")
        checks.append(check)
    return {"runtime": f"onnxruntime {ort.__version__}", "checks": checks, "tolerance": graph.tolerance}
