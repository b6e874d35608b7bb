"""The ``Task`` contract every task package fulfils, and the registry that finds a task by name.

A task (classification, segmentation, detection, regression, ...) is one package under ``medlens/tasks/``
holding all of it: planning rules, data loading and augmentation, the Lightning module, the choice of an
operating point on validation, prediction to a typed :class:`~medlens.core.prediction.Prediction`, metrics
and report, the export graph, model-card lines. The shared layers (``training``, ``models``, ``metrics``,
``reports``, ``workflows``) call these methods and know no task by name; adding a task is one package plus
one line in :mod:`medlens.tasks` (the registration list).

Registry in the way of timm's model registry (STYLE.md item 1): ``register_task`` fills a dict,
``get_task`` looks a name up (an unknown name is a one-line error listing the known ones).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medlens.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Case, Dataset
    from medlens.explanations.explainer import Explainer
    from medlens.metrics.subgroups import Subgroups
    from medlens.models.bundle import Bundle
    from medlens.training.budget import BudgetSchedule
    from medlens.training.members import Member
    from medlens.training.plan import Plan


@dataclass
class Calibration:
    """What a task chose on validation after training: the final plan, the operating threshold, facts for the
    bundle (``info``), the model card and ``train_summary.json`` (``summary``), the numbers prediction
    applies (``applied``: a temperature, a referral threshold, a conformal quantile; ``bundle.yaml``'s
    ``calibration:``, read back as :attr:`Bundle.calibration <medlens.models.bundle.Bundle.calibration>`), and the
    validation cases the model did worst on by the task's own measure (``worst_cases``, from
    :func:`medlens.metrics.cases.worst_cases`: the model card's known failure modes)."""

    plan: Plan
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    worst_cases: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Graph:
    """A task's ONNX export: the module to trace, an example input, names, dynamic axes and what they mean."""

    module: nn.Module
    example: torch.Tensor
    input_name: str
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    input_shape: list[Any]
    input_meaning: str
    preprocessing: dict[str, Any]
    tolerance: dict[str, float]
    more_examples: list[torch.Tensor] = field(default_factory=list)


@dataclass
class GraphCheck:
    """How a task scores its ONNX graph on validation (used to accept or refuse a quantised graph): validation
    inputs in the graph's input form (``inputs``, each one batch; they calibrate the quantiser and time the graphs),
    the metric's name, and ``score``, which runs a graph (given as a function from an input batch to its first
    output) over the validation cases and returns the metric (higher is better)."""

    metric: str
    inputs: list[Any]
    score: Callable[[Callable[[Any], Any]], float]


@dataclass
class Distillation:
    """What a task gives to train a student on a teacher bundle: the loaders (the training batches carry the
    teacher's softened outputs) and the Lightning module of the student (built from the budget schedule), with the
    loss in words for the model card."""

    train: DataLoader[Any]
    val: DataLoader[Any]
    module: Callable[[BudgetSchedule], pl.LightningModule]
    loss: str


class implemented_in:
    """A task hook whose implementation is a function (or class) in a module of the task's package, imported on
    first use: ``build_network = implemented_in("medlens.tasks.segmentation.module:build_network")``.

    A task package's ``__init__`` stays light (``import medlens`` does not import torch), and a hook that only
    passes its arguments on is one line instead of a method that imports and forwards. The function is called
    with the hook's arguments, without ``self``.
    """

    def __init__(self, target: str) -> None:
        self.module, _, self.name = target.partition(":")

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:  # read from the class (ABCMeta does, to find abstract methods): import nothing yet
            return self
        return getattr(importlib.import_module(self.module), self.name)

    def __repr__(self) -> str:
        return f"implemented_in({self.module}:{self.name})"


class Task(ABC):
    """The contract of a task package; the shared layers call nothing else.

    Class attributes:
        name: the registry name (``dataset.yaml``'s and ``plan.yaml``'s ``task``).
        aliases: further names served by the same package (classification serves ``multilabel``).
        plan_type: the task's :class:`~medlens.training.plan.Plan` subclass (adds its own section).
        description: one line for ``medlens tasks`` and errors.
        batch_size: images predicted together by :meth:`predict` when several are given.
        model_output: the kind of network the task trains (``image``, ``pixel``, ``boxes``: see
            :mod:`medlens.models.registry`).
        explain_methods: the explanation methods (:mod:`medlens.explanations.methods`) that explain this task's models,
            the first being the default of a bundle that recorded none.
        explain_images: validation images on which training scores the methods to choose a bundle's default.
        explain_training_methods: the methods training scores (None: those of :attr:`explain_methods` that are not
            slow).
        privacy_refused: why the task cannot be trained with differential privacy (``train.privacy``); empty when
            it can (its network is built with ``create_model(..., private=True)`` then).
        fingerprint_images: images the shared fingerprint reads for shapes and intensities (0: the task's inputs
            are not images, e.g. tables of visits; its own :meth:`fingerprint` measures them).
        table_importer: the importer of ``medlens import table --task NAME`` (``csv``: one image per row, its label
            in a column; ``visits``: rows are visits of subjects); empty when a table cannot hold the labels.
        table_label: what the ``csv`` importer reads from the label column: ``categorical`` or ``continuous``.
    """

    name: ClassVar[str]
    model_output: ClassVar[str] = "image"
    aliases: ClassVar[tuple[str, ...]] = ()
    plan_type: ClassVar[type[Plan]]
    description: ClassVar[str] = ""
    batch_size: ClassVar[int] = 1
    explain_methods: ClassVar[tuple[str, ...]] = ()
    explain_images: ClassVar[int] = 8
    explain_training_methods: ClassVar[tuple[str, ...] | None] = None
    privacy_refused: ClassVar[str] = ""
    fingerprint_images: ClassVar[int] = 400
    table_importer: ClassVar[str] = ""
    table_label: ClassVar[str] = ""

    # ---- data and plan --------------------------------------------------------------------------------------
    def check_dataset(self, dataset: Dataset) -> None:
        """Raise :class:`InputError` naming the manifest when ``dataset`` cannot be trained on."""
        manifest = dataset.root / dataset.spec.manifest
        for split in ("train", "val"):
            if not dataset.split(split):
                raise InputError(manifest, f"no cases in the {split} split")

    def one_class_per_image(self, dataset: Dataset) -> bool:
        """Whether each image of ``dataset`` carries exactly one of its classes (what class-conditional generators
        and per-class sampling need)."""
        return False

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        """The task's part of the fingerprint (merged into the shared one); none by default."""
        return {}

    @abstractmethod
    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> Plan:
        """Derive the plan from the fingerprint by readable rules, each writing its reason into ``notes``."""

    # ---- training -------------------------------------------------------------------------------------------
    @abstractmethod
    def build_network(self, plan: Plan) -> nn.Module:
        """The plan's network (``model.pretrained`` loaded when set)."""

    @abstractmethod
    def prepare(self, dataset: Dataset, plan: Plan, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        """Read what training needs of ``cases`` (once per run; in memory when ``data.cache`` says so)."""

    @abstractmethod
    def loaders(self, plan: Plan, prepared: Any, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
        """Training and validation loaders of one member (its seed is ``plan.train.seed``)."""

    @abstractmethod
    def module(self, plan: Plan, budget: BudgetSchedule | None) -> pl.LightningModule:
        """The Lightning module that trains :meth:`build_network`'s network (``self.net``) and logs the monitor."""

    def calibrate(self, plan: Plan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: Any) -> Calibration:
        """Choose what is chosen on validation (operating point, post-processing) with the trained members."""
        return Calibration(plan)

    def card_lines(self, plan: Plan, calibration: Calibration) -> list[str]:
        """Task lines for the model card (network, choices made on validation)."""
        return []

    # ---- prediction and evaluation --------------------------------------------------------------------------
    def read_input(self, item: Any, nonfinite: str = "refuse") -> Any:
        """One input for :meth:`predict` from a path (an object already read passes through): an image read with
        ``medlens.io`` and checked for non-finite pixels by default (:func:`medlens.models.bundle.read_input`)."""
        from medlens.models.bundle import read_input

        return read_input(item, nonfinite)  # type: ignore[arg-type]

    @abstractmethod
    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        """Predict each image (in its own geometry) with every member of ``bundle``."""

    def finish_predictions(self, folder: Path, predictions: Sequence[Prediction]) -> None:  # noqa: B027
        """Write outputs about a whole batch of predictions (detection: COCO results); none by default."""

    @abstractmethod
    def evaluate(
        self,
        bundle: Bundle,
        dataset: Dataset,
        cases: Sequence[Case],
        folder: Path,
        *,
        n_bootstrap: int,
        title: str,
        progress: ProgressFn | None = None,
        subgroups: Subgroups | None = None,
    ) -> dict[str, Any]:
        """Predict ``cases`` through ``bundle.predict``, measure against their truth, write ``metrics.json``,
        ``report.html`` and what else the task shows into ``folder``; return the metrics.

        Intervals resample patients when ``cases`` share patients (:func:`medlens.metrics.bootstrap.group_index`).
        With ``subgroups``, every metric is also measured per subgroup by the same function (and the rest of the
        cases for comparison), under ``subgroups`` in the metrics and as a table in the report
        (:func:`medlens.metrics.subgroups.subgroup_metrics`)."""

    @abstractmethod
    def export_graph(self, bundle: Bundle) -> Graph:
        """What ONNX export traces, with an example input and what goes in and out."""

    def graph_check(self, bundle: Bundle, dataset: Dataset, cases: Sequence[Case]) -> GraphCheck:
        """Validation inputs and the metric that score :meth:`export_graph`'s graph (``export --quantize``)."""
        raise ConfigError("--quantize", f"the {self.name} task has no validation check for a quantised graph yet")

    # ---- compression ----------------------------------------------------------------------------------------
    def distiller(
        self,
        teacher: Bundle,
        plan: Plan,
        prepared: Any,
        member: Member,
        unlabeled: Sequence[Image],
        *,
        temperature: float,
        soft_weight: float,
    ) -> Distillation:
        """Loaders and module that train ``plan``'s network (the student) on ``teacher``'s softened outputs for the
        member's training cases and the ``unlabeled`` images (weight ``soft_weight``), plus the hard labels
        (weight ``1 - soft_weight``); ``prepared`` is :meth:`prepare`'s result for the member's cases."""
        raise ConfigError("distill", f"the {self.name} task cannot distil a bundle into a student yet")

    def bundle_files(self, plan: Plan) -> dict[str, Path]:
        """Files and folders outside the run that predicting with ``plan`` reads, copied into the bundle under these
        relative names so a bundle moved to another machine still predicts (the sequence task's image encoders)."""
        return {}

    # ---- reports --------------------------------------------------------------------------------------------
    @abstractmethod
    def findings(self, prediction: Prediction, bundle: Bundle) -> list[dict[str, Any]]:
        """What ``prediction`` found, in the shared vocabulary of :mod:`medlens.core.findings` (probabilities and
        the predicted class, sizes per structure, boxes, a value): the clinical report, its texts and the DICOM
        SR are built from these alone."""

    # ---- explanation ----------------------------------------------------------------------------------------
    def explainer(self, bundle: Bundle, image: Image, *, target: str | None = None) -> Explainer:
        """What the methods of :attr:`explain_methods` need to explain ``image`` (in its own geometry) for
        ``target`` (a class name; default: the model's own answer): see :class:`medlens.explanations.Explainer`."""
        raise ConfigError("task", f"the {self.name} task has no explanations")


_TASKS: dict[str, Task] = {}


def register_task(task: type[Task]) -> type[Task]:
    """Class decorator: register an instance of ``task`` under its name and aliases."""
    instance = task()
    for name in (task.name, *task.aliases):
        _TASKS[name] = instance
    return task


def _load_builtin() -> None:
    import medlens.tasks  # noqa: F401  (the registration list)


def get_task(name: str) -> Task:
    """The task registered as ``name``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    _load_builtin()
    if name not in _TASKS:
        raise ConfigError("task", f"unknown task {name!r} (known: {', '.join(list_tasks())})")
    return _TASKS[name]


def list_tasks() -> list[str]:
    """Every registered task name (aliases included), sorted."""
    _load_builtin()
    return sorted(_TASKS)


def parse_plan(raw: Any, source: str) -> Plan:
    """Validate a plan mapping with its task's plan type."""
    from medlens.training.overrides import validate_plan

    if not isinstance(raw, dict) or not isinstance(raw.get("task"), str):
        raise ConfigError("task", f"a plan names its task (in {source})")
    return validate_plan(raw, get_task(raw["task"]).plan_type, source)


def load_plan(path: Path) -> Plan:
    """Read and validate a ``plan.yaml``."""
    from medlens.training.overrides import read_plan_mapping

    return parse_plan(read_plan_mapping(Path(path)), str(path))


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle from its folder, or from a run folder holding ``bundle/``.

    Example:
        >>> bundle = load_bundle("runs/pneumonia")  # doctest: +SKIP
        >>> bundle.predict("xray.png").to_dict()["label"]  # doctest: +SKIP
        'pneumonia'
    """
    from medlens.models.bundle import read_bundle

    resolve: Callable[[dict[str, Any], str], tuple[Plan, Task]] = lambda raw, source: (  # noqa: E731
        parse_plan(raw, source),
        get_task(str(raw.get("task"))),
    )
    return read_bundle(path, resolve)
