"""The bundle: everything ``predict``, ``explain``, ``export`` and ``serve`` need, and nothing else.

Layout::

    bundle/
      bundle.yaml          # task, classes, the plan (preprocessing + network), members, operating threshold,
                           # calibration (numbers chosen on validation that prediction applies)
      member_0.safetensors # weights of each trained seed (or fold); predictions average their probabilities
      model_card.md        # data, metrics with confidence intervals, intended use, limits
      evaluation.json      # held-out metrics with intervals, written by 'evaluate --update-card' (optional)

``bundle.yaml`` may also hold ``explanation``: the default explanation method chosen on validation after training,
why, and the faithfulness scores it was chosen by (``{"default", "why", "scores"}``; see
:mod:`medlens.explanations.faithfulness`). Bundles written before it load unchanged (``Bundle.explanation`` is then
empty, and ``explain`` falls back to the task's first method).

Weights are safetensors files: loading a bundle never unpickles anything, so a bundle received from
elsewhere cannot run code. ``bundle.predict(image_or_path)`` gives a typed prediction for every task; the
task itself (found through the registry when the bundle is loaded) does the work.

``calibration:`` in ``bundle.yaml`` is a mapping of plain values a task chose on validation and applies when it
predicts (classification: ``temperature``, ``referral_threshold``, ``conformal_quantile``; regression: the
conformal interval's half-width). Each task reads its own keys with a default for every one, so a bundle written
before ``calibration:`` existed loads and predicts as it did (temperature 1, no referral, no sets).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from medlens.core.errors import ConfigError, InputError, MedlensError, one_line
from medlens.core.image import Image, require_finite
from medlens.core.outputs import replace_folder, write_text_atomic
from medlens.training.plan import Plan

if TYPE_CHECKING:
    from torch import nn

    from medlens.core.prediction import Prediction
    from medlens.tasks.base import Task

BUNDLE_FILE = "bundle.yaml"
EVALUATION_FILE = "evaluation.json"
CARD_FILE = "model_card.md"
BUNDLE_FORMAT = "medlens-bundle/1"
NonFinite = Literal["refuse", "clean"]


@dataclass
class Bundle:
    """A trained model: the plan it was trained with, its members' weights, its operating point, its task, and the
    explanation method chosen for it (``explanation``: ``{"default", "why", "scores"}``, empty for older bundles)."""

    root: Path
    plan: Plan
    members: list[str]
    task: Task
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    explanation: dict[str, Any] = field(default_factory=dict)
    _nets: list[nn.Module] = field(default_factory=list, repr=False)

    @property
    def class_names(self) -> list[str]:
        return self.plan.class_names

    @property
    def name(self) -> str:
        """The model's name: its run folder's name (or the bundle folder's, when it stands alone)."""
        root = self.root.resolve()
        return root.parent.name if root.name == "bundle" else root.name

    def spec(self) -> dict[str, Any]:
        """``bundle.yaml`` as written (format, created, info, the plan, and what later steps added)."""
        return read_spec(self.root / BUNDLE_FILE)

    def evaluation(self) -> dict[str, Any] | None:
        """The held-out evaluation recorded in the bundle (``evaluation.json``), or None when there is none."""
        import json

        path = self.root / EVALUATION_FILE
        if not path.is_file():
            return None
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise InputError(path, "not a readable JSON file") from None
        if not isinstance(recorded, dict):
            raise InputError(path, "not a mapping (an evaluation records metrics by name)")
        return recorded

    def networks(self) -> list[nn.Module]:
        """The member networks in eval mode (built and loaded once)."""
        if not self._nets:
            import torch

            # built outside inference mode even when first asked for inside it (a prediction's), so that
            # explanations can take gradients through the same networks later
            with torch.inference_mode(False):
                self._load_networks()
        return self._nets

    def _load_networks(self) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        plan = self.plan.without_pretrained()
        for member in self.members:
            try:
                net = self.task.build_network(plan)
            except ConfigError as exc:  # a plan whose network cannot be built
                raise InputError(self.root / BUNDLE_FILE, f"invalid plan: {exc}") from None
            try:
                state = load_file(str(self.root / member))
                if self.info.get("pruned"):  # channels removed after training: layers take the weights' shapes
                    from medlens.models.pruning import fit_shapes

                    fit_shapes(net, state)
                net.load_state_dict(state)
            except (SafetensorError, OSError, RuntimeError) as exc:
                problem = one_line(str(exc))[:300]  # torch names the keys on the lines after the first
                raise InputError(self.root / member, f"weights do not fit the plan's network ({problem})") from None
            bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
            if bad:
                raise InputError(self.root / member, f"weights hold NaN or infinite values ({', '.join(bad[:3])})")
            self._nets.append(net.eval())

    def predict(self, image: Image | str | Path, *, tta: bool = False, nonfinite: NonFinite = "refuse") -> Prediction:
        """Predict one image (an :class:`Image` or a path medlens reads) with every member.

        Args:
            image: the input, in its own geometry.
            tta: test-time augmentation where the task has it (segmentation: mirroring).
            nonfinite: ``refuse`` (an error naming the input) or ``clean`` pixels that are NaN or infinite
                (see :func:`clean_nonfinite`; the prediction is flagged).

        Example:
            >>> from medlens import load_bundle
            >>> load_bundle("runs/hippo").predict("case.nii.gz").volumes_ml  # doctest: +SKIP
            {'anterior': 1.92, 'posterior': 1.71}
        """
        return self.task.predict(self, [self.task.read_input(image, nonfinite)], tta=tta)[0]

    def predict_many(
        self,
        items: Iterable[Image | str | Path],
        *,
        tta: bool = False,
        nonfinite: NonFinite = "refuse",
        on_error: Callable[[Any, MedlensError], None] | None = None,
    ) -> Iterator[Prediction]:
        """Predict a stream of inputs, a few at a time (the task's batch size), yielding as it goes.

        Args:
            items: images or paths.
            tta: see :meth:`predict`.
            nonfinite: see :meth:`predict`.
            on_error: called with the item and the error for an input that cannot be read or predicted, which is
                then skipped; without it the error is raised.
        """
        batch: list[Image] = []
        size = max(1, self.task.batch_size)
        for item in items:
            try:
                batch.append(self.task.read_input(item, nonfinite))
            except MedlensError as exc:
                if on_error is None:
                    raise
                on_error(item, exc)
                continue
            if len(batch) >= size:
                yield from self._predict_batch(batch, tta, on_error)
                batch = []
        if batch:
            yield from self._predict_batch(batch, tta, on_error)

    def _predict_batch(
        self, images: list[Image], tta: bool, on_error: Callable[[Any, MedlensError], None] | None
    ) -> Iterator[Prediction]:
        if on_error is None:
            yield from self.task.predict(self, images, tta=tta)
            return
        try:
            predictions = self.task.predict(self, images, tta=tta)
        except MedlensError as exc:
            if len(images) == 1:
                on_error(images[0].meta.get("source", "<memory>"), exc)
                return
            for image in images:  # find the one that failed; predict the others
                yield from self._predict_batch([image], tta, on_error)
            return
        yield from predictions


def read_input(item: Image | str | Path, nonfinite: NonFinite = "refuse") -> Image:
    """An input for prediction: an :class:`Image` as given, or a file or folder read with ``medlens.io``; its
    pixels checked for NaN and infinity (refused, or cleaned and flagged)."""
    from medlens.io import read_image

    if isinstance(item, Image):
        image = item
        image.meta.setdefault("source", "<memory>")
    else:
        image = read_image(Path(item))
        image.meta["source"] = str(item)
    return clean_nonfinite(image) if nonfinite == "clean" else refuse_nonfinite(image)


def refuse_nonfinite(image: Image) -> Image:
    """Raise an error naming the input when any pixel is NaN or infinite; a model must not diagnose those."""
    return require_finite(image, doing="predict from (--nonfinite clean replaces such pixels)")


def clean_nonfinite(image: Image) -> Image:
    """Replace NaN and -inf by the smallest finite value of the image and +inf by the largest, and flag it.

    The rule keeps every replaced pixel inside the image's own range, so normalisation is not thrown off; an
    image with no finite pixel at all is refused.
    """
    array = image.array
    if not np.issubdtype(array.dtype, np.floating):
        return image
    finite = np.isfinite(array)
    if finite.all():
        return image
    if not finite.any():
        raise InputError(str(image.meta.get("source", "<memory>")), "no pixel is a finite number")
    low, high = float(array[finite].min()), float(array[finite].max())
    cleaned = np.where(np.isnan(array) | np.isneginf(array), low, np.where(np.isposinf(array), high, array))
    flag = (
        f"{int(np.size(array) - np.count_nonzero(finite))} non-finite pixel(s) replaced (NaN and -inf by the "
        f"image minimum {low:g}, +inf by its maximum {high:g})"
    )
    out = Image(cleaned.astype(array.dtype), image.affine, image.kind, dict(image.meta), dict(image.identifiers))
    out.warnings = [*image.warnings, flag]
    out.meta["flags"] = [*image.meta.get("flags", []), flag]
    return out


def save_bundle(
    root: Path,
    plan: Plan,
    weights: list[dict[str, Any]],
    *,
    task: Task,
    threshold: float | None,
    info: dict[str, Any],
    card: str | None = None,
    calibration: dict[str, Any] | None = None,
    explanation: dict[str, Any] | None = None,
) -> Bundle:
    """Write a bundle folder (weights as safetensors, the spec as YAML, the model card as Markdown: ``card``, or
    rendered from the spec by :func:`medlens.training.card.render_card` when not given); ``explanation`` (the
    default method, why, and its scores) is recorded when given."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    members = []
    for i, state in enumerate(weights):
        name = f"member_{i}.safetensors"
        tmp = root / f".{name}.partial"
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(root / name)
        members.append(name)
    spec = {
        "format": BUNDLE_FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": plan.task,
        "class_names": plan.class_names,
        "threshold": threshold,
        "members": members,
        "info": info,
        "calibration": calibration or {},
        "plan": plan.model_dump(),
    }
    if explanation:
        from medlens.core.outputs import strict_json

        spec["explanation"] = strict_json(explanation)  # plain numbers and lists: safe_dump takes them
    for name, source in task.bundle_files(plan).items():
        _copy_into(root, name, source)
    write_text_atomic(root / BUNDLE_FILE, yaml.safe_dump(spec, sort_keys=False))
    if card is None:
        from medlens.training.card import render_card

        card = render_card(spec)
    write_text_atomic(root / CARD_FILE, card)
    return Bundle(root, plan, members, task, threshold, info, dict(calibration or {}), dict(explanation or {}))


def _copy_into(root: Path, name: str, source: Path) -> None:
    """Copy a file or folder the bundle at ``root`` needs to ``root / name`` (copied beside, then moved in: never
    half a copy). ``name`` must stay inside the bundle, so a copy can only ever replace the bundle's own earlier copy
    (a resumed run saves its bundle again)."""
    import shutil

    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"bundle file name {name!r} must be a relative path inside the bundle")
    if not source.exists():
        raise InputError(source, "the bundle needs this file or folder, and it is gone")
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as work:
        copy = Path(work) / "copy"
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copy2(source, copy)
        replace_folder(copy, target)


def read_spec(spec_path: Path) -> dict[str, Any]:
    """A ``bundle.yaml`` mapping, checked to hold a plan."""
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(spec_path, f"not a readable YAML file ({type(exc).__name__})") from None
    except OSError as exc:
        raise InputError(spec_path, f"cannot be read ({exc.strerror})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("plan"), dict):
        raise InputError(spec_path, "not a medlens bundle (no plan mapping)")
    return spec


def read_bundle(path: str | Path, resolve: Callable[[dict[str, Any], str], tuple[Plan, Task]]) -> Bundle:
    """Read a bundle folder (or a run folder holding ``bundle/``); ``resolve`` turns the spec's plan into a typed
    plan and its task (the task registry's :func:`~medlens.tasks.base.load_bundle` passes it)."""
    path = Path(path)
    root = path / "bundle" if (path / "bundle" / BUNDLE_FILE).is_file() else path
    spec_path = root / BUNDLE_FILE
    if not spec_path.is_file():
        raise InputError(path, "no trained model here (neither bundle.yaml nor bundle/bundle.yaml); train first")
    spec = read_spec(spec_path)
    if spec.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
        raise InputError(
            spec_path, f"format {spec.get('format')!r} is not {BUNDLE_FORMAT!r}, the one this medlens reads"
        )
    members = spec.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise InputError(spec_path, "not a medlens bundle (members must be a list of weight file names)")
    try:
        plan, task = resolve(spec["plan"], str(spec_path))
    except ConfigError as exc:
        raise InputError(spec_path, f"invalid plan: {exc}") from None
    for member in members:
        member_path = root / member
        if Path(member).name != member or member_path.suffix != ".safetensors":
            raise InputError(spec_path, f"member {member!r} is not a .safetensors file inside the bundle")
        if not member_path.is_file():
            raise InputError(member_path, "bundle member weights missing")
    threshold = spec.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1
    ):
        raise InputError(spec_path, f"threshold {threshold!r} is not a number from 0 to 1")
    info = spec.get("info") or {}
    if not isinstance(info, dict):
        raise InputError(spec_path, "info is not a mapping")
    calibration = spec.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise InputError(spec_path, "calibration is not a mapping")
    explanation = spec.get("explanation") or {}
    if not isinstance(explanation, dict) or not isinstance(explanation.get("default", ""), str):
        raise InputError(spec_path, "explanation is not a mapping with a method name as its default")
    threshold_value = None if threshold is None else float(threshold)
    return Bundle(root, plan, list(members), task, threshold_value, dict(info), dict(calibration), dict(explanation))
