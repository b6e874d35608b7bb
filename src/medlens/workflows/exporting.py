"""Export a bundle to ONNX: one ``model.onnx`` holding every member, and ``export.json`` saying how to feed it.

What the graph holds depends on the task, so that ONNX Runtime users write as little as possible by hand:

- classification: prepared input (N, C, *input_size) in raw units -> ensemble-mean probabilities (N, K); the
  plan's clipping and normalisation are inside the graph.
- segmentation: a normalised patch (N, C, *spatial) -> ensemble-mean class probabilities per voxel; the
  sliding window, resampling and per-case normalisation stay outside (``export.json`` records them), as in
  nnU-Net and MONAI bundles, because they depend on the case's size.
- detection: one image (C, H, W) of any size in raw units -> ``boxes`` (x1, y1, x2, y2 in the image's pixels),
  ``scores`` and ``labels`` (0..K-1); resizing, normalisation and class-wise NMS over the pooled members are
  inside the graph.

The export is checked: ONNX Runtime and PyTorch run the same input and must agree (``verification`` in
``export.json``), else nothing is written. torch's TorchScript-based exporter is used (``dynamo=False``):
torchvision's detectors, with their data-dependent NMS, export through it, and it needs no onnxscript.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medlens.core.atomic import atomic_dir
from medlens.core.errors import MedlensError
from medlens.models.bundle import Bundle, load_bundle

log = logging.getLogger(__name__)
OPSET = 17
TOLERANCE = {"probabilities": 1e-3, "scores": 1e-3, "boxes": 1.0}  # boxes in pixels


class _Classifier(nn.Module):
    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())
        self.data, self.task = bundle.plan.data, bundle.plan.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medlens.tasks.classification import probabilities
        from medlens.transforms.preprocess import normalize

        x = normalize(x, self.data)
        return torch.stack([probabilities(net(x), self.task) for net in self.nets]).mean(0)


class _Segmenter(nn.Module):
    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(net(x), dim=1) for net in self.nets]).mean(0)


class _Detector(nn.Module):
    """Every member's boxes above the evaluation score (no NMS), pooled, then class-wise NMS as ``merge``."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        from medlens.plan.detection_schema import DetectionPlan
        from medlens.tasks.detection import set_unsuppressed

        nets = [copy.deepcopy(net) for net in bundle.networks()]
        for net in nets:
            set_unsuppressed(net)
        self.nets = nn.ModuleList(nets)
        d = bundle.plan.detection or DetectionPlan()
        self.nms_iou, self.max_dets = float(d.nms_iou), int(d.detections_per_image)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from medlens.tasks.detection import merge

        out = merge([net([image])[0] for net in self.nets], self.nms_iou, self.max_dets)
        return out["boxes"], out["scores"], out["labels"] - 1


def export_onnx(run_dir: str | Path, out: str | Path, *, opset: int = OPSET, overwrite: bool = False) -> dict[str, Any]:
    """Write ``out/model.onnx`` and ``out/export.json`` for the bundle in ``run_dir``; return the export spec.

    Example:
        >>> spec = export_onnx("runs/bccd", "runs/bccd/onnx")  # doctest: +SKIP
        >>> spec["inputs"][0]["name"]  # doctest: +SKIP
        'image'
    """
    bundle = load_bundle(run_dir)
    plan = bundle.plan
    task = plan.task
    channels = plan.data.channels
    generator = torch.Generator().manual_seed(0)
    if task == "detection":
        wrapper: nn.Module = _Detector(bundle)
        height, width = plan.data.input_size
        example = _raw_like(plan.data.mean, plan.data.std, (channels, height, width), generator)
        names, outputs = ["image"], ["boxes", "scores", "labels"]
        dynamic = {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"}, "labels": {0: "n"}}
    elif task == "segmentation":
        wrapper = _Segmenter(bundle)
        example = torch.randn((1, channels, *plan.data.input_size), generator=generator)
        names, outputs = ["patch"], ["probabilities"]
        spatial = {d + 2: f"size{d}" for d in range(len(plan.data.input_size))}
        dynamic = {"patch": {0: "batch", **spatial}, "probabilities": {0: "batch", **spatial}}
    else:
        wrapper = _Classifier(bundle)
        example = _raw_like(plan.data.mean, plan.data.std, (2, channels, *plan.data.input_size), generator)
        names, outputs = ["image"], ["probabilities"]
        dynamic = {"image": {0: "batch"}, "probabilities": {0: "batch"}}
    wrapper.eval()
    with atomic_dir(out, overwrite=overwrite) as tmp, torch.inference_mode(False), torch.no_grad():
        path = tmp / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in torchvision's code
            torch.onnx.export(
                wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=names, output_names=outputs, dynamic_axes=dynamic,
            )  # fmt: skip
        verification = _verify(path, wrapper, example, outputs)
        spec = {
            "format": "medlens-onnx/1",
            "task": task,
            "class_names": plan.class_names,
            "opset": opset,
            "members": len(bundle.members),
            "inputs": [_input_spec(task, plan, names[0], example)],
            "outputs": outputs,
            "preprocessing": _preprocessing(bundle),
            "verification": verification,
            "bundle": str(bundle.root.resolve()),
        }
        (tmp / "export.json").write_text(json.dumps(spec, indent=2))
    log.info("exported %s (%d member(s)) to %s", task, len(bundle.members), Path(out) / "model.onnx")
    return spec


def _raw_like(mean: float, std: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A random input in the dataset's raw units (so the graph's normalisation sees realistic values)."""
    return torch.randn(shape, generator=generator) * std + mean


def _verify(path: Path, wrapper: nn.Module, example: torch.Tensor, outputs: list[str]) -> dict[str, Any]:
    """Run ONNX Runtime and PyTorch on the example (and on another size where the axes are dynamic)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [example]
    if example.dim() == 3:  # a detection image: also a different height and width than the traced one
        inputs.append(example[:, : example.shape[1] * 3 // 4, : example.shape[2] * 5 // 8].contiguous())
    checks = []
    for x in inputs:
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            want = wrapper(x)
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        check: dict[str, Any] = {"input_shape": list(x.shape)}
        for name, g, w in zip(outputs, got, want, strict=True):
            if g.shape != w.shape:
                raise MedlensError(f"{path}: ONNX output {name} has shape {g.shape}, PyTorch {w.shape}")
            diff = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if g.size else 0.0
            check[f"max_abs_diff_{name}"] = diff
            if diff > TOLERANCE.get(name, 0.0):
                raise MedlensError(f"{path}: ONNX and PyTorch {name} differ by {diff:g} on input {list(x.shape)}")
        checks.append(check)
    return {"runtime": f"onnxruntime {ort.__version__}", "checks": checks, "tolerance": TOLERANCE}


def _input_spec(task: str, plan: Any, name: str, example: torch.Tensor) -> dict[str, Any]:
    if task == "detection":
        shape: list[Any] = [plan.data.channels, "height", "width"]
        meaning = "one image, float32, raw pixel values (as read), any height and width"
    elif task == "segmentation":
        shape = ["batch", plan.data.channels, *[f"size{d}" for d in range(len(plan.data.input_size))]]
        meaning = "normalised patches at the target spacing; sizes divisible by the network's total stride"
    else:
        shape = ["batch", plan.data.channels, *plan.data.input_size]
        meaning = "images resized to input_size, float32, raw units (clipping and normalisation are in the graph)"
    return {"name": name, "shape": shape, "dtype": "float32", "meaning": meaning, "example_shape": list(example.shape)}


def _preprocessing(bundle: Bundle) -> dict[str, Any]:
    plan = bundle.plan
    spec: dict[str, Any] = {"input_size": plan.data.input_size, "channels": plan.data.channels}
    if plan.task == "segmentation" and plan.segmentation is not None:
        seg = plan.segmentation
        spec |= {
            "target_spacing": seg.target_spacing,
            "configuration": seg.configuration,
            "normalization": seg.normalization,
            "ct_clip": seg.ct_clip,
            "ct_mean": seg.ct_mean,
            "ct_std": seg.ct_std,
            "patch_size": plan.data.input_size,
            "sliding_window": {"overlap": seg.sw_overlap, "mode": seg.sw_mode},
        }
    elif plan.task == "detection" and plan.detection is not None:
        spec |= {
            "resize_short_side": plan.detection.train_short_sides[-1],
            "operating_score_threshold": bundle.threshold,
            "nms_iou": plan.detection.nms_iou,
        }
    else:
        spec |= {
            "clip": plan.data.clip,
            "normalization": plan.data.normalization,
            "mean": plan.data.mean,
            "std": plan.data.std,
            "decision_threshold": bundle.threshold,
        }
    return spec
